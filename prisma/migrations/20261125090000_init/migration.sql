-- EventFlow control tables, as in the seed schema (seed-schema.md section 4).
-- Foreign keys are enforced and never cascade: control entities are soft-deleted.

-- CreateTable
CREATE TABLE "organizations" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "name" VARCHAR(255) NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "is_active" BOOLEAN NOT NULL DEFAULT true,

    CONSTRAINT "organizations_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "users" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "org_id" UUID NOT NULL,
    "email" VARCHAR(320) NOT NULL,
    "password_hash" TEXT NOT NULL,
    "role" VARCHAR(16) NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "is_active" BOOLEAN NOT NULL DEFAULT true,

    CONSTRAINT "users_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "users_role_check" CHECK ("role" IN ('admin', 'viewer'))
);

-- CreateTable
CREATE TABLE "api_keys" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "org_id" UUID NOT NULL,
    "key_hash" TEXT NOT NULL,
    "label" VARCHAR(255),
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revoked_at" TIMESTAMP(3),

    CONSTRAINT "api_keys_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "event_streams" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "org_id" UUID NOT NULL,
    "name" VARCHAR(249) NOT NULL,
    "schema" JSONB,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "is_active" BOOLEAN NOT NULL DEFAULT true,
    -- EventFlow extensions: partition count, retention, and when the stream was soft-deleted.
    "partitions" INTEGER NOT NULL DEFAULT 1,
    "retention_hours" INTEGER NOT NULL DEFAULT 168,
    "deleted_at" TIMESTAMP(3),

    CONSTRAINT "event_streams_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "event_streams_partitions_check" CHECK ("partitions" BETWEEN 1 AND 1024),
    CONSTRAINT "event_streams_retention_hours_check" CHECK ("retention_hours" > 0)
);

-- CreateTable (range-partitioned by created_at; Prisma cannot express the partitioning)
-- The primary key must contain the partition key, so it is (id, created_at); id stays unique
-- in practice because EventFlow derives it from (stream, partition, offset).
CREATE TABLE "events" (
    "id" UUID NOT NULL,
    "stream_id" UUID NOT NULL,
    "payload" JSONB NOT NULL,
    "metadata" JSONB,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "events_pkey" PRIMARY KEY ("id", "created_at")
) PARTITION BY RANGE ("created_at");

-- CreateTable
CREATE TABLE "consumer_groups" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "stream_id" UUID NOT NULL,
    "name" VARCHAR(255) NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "consumer_groups_pkey" PRIMARY KEY ("id")
);

-- CreateTable (seed: one row per group; kept as the group's overall position)
CREATE TABLE "consumer_offsets" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "consumer_group_id" UUID NOT NULL,
    "last_event_id" UUID,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "consumer_offsets_pkey" PRIMARY KEY ("id")
);

-- CreateTable (EventFlow: a committed offset per group AND partition. The seed's
-- UNIQUE(consumer_group_id) on consumer_offsets cannot hold for multi-partition streams,
-- so this table sits beside it instead of breaking it.)
CREATE TABLE "consumer_partition_offsets" (
    "consumer_group_id" UUID NOT NULL,
    "partition" INTEGER NOT NULL,
    "committed_offset" BIGINT NOT NULL,
    "metadata" TEXT,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "consumer_partition_offsets_pkey" PRIMARY KEY ("consumer_group_id", "partition"),
    CONSTRAINT "consumer_partition_offsets_offset_check" CHECK ("committed_offset" >= 0)
);

-- CreateTable
CREATE TABLE "dead_letter_events" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "event_id" UUID NOT NULL,
    "reason" TEXT NOT NULL,
    "payload" JSONB,
    "failed_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "dead_letter_events_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "organizations_name_key" ON "organizations"("name");

-- CreateIndex
CREATE UNIQUE INDEX "users_email_key" ON "users"("email");

-- CreateIndex
CREATE INDEX "users_org_id_idx" ON "users"("org_id");

-- CreateIndex
CREATE INDEX "api_keys_org_id_idx" ON "api_keys"("org_id");

-- CreateIndex
CREATE UNIQUE INDEX "event_streams_org_id_name_key" ON "event_streams"("org_id", "name");

-- CreateIndex
CREATE INDEX "events_stream_id_created_at_idx" ON "events"("stream_id", "created_at");

-- CreateIndex
CREATE INDEX "events_payload_idx" ON "events" USING GIN ("payload");

-- CreateIndex
CREATE UNIQUE INDEX "consumer_groups_stream_id_name_key" ON "consumer_groups"("stream_id", "name");

-- CreateIndex
CREATE UNIQUE INDEX "consumer_offsets_consumer_group_id_key" ON "consumer_offsets"("consumer_group_id");

-- CreateIndex
CREATE INDEX "dead_letter_events_event_id_idx" ON "dead_letter_events"("event_id");

-- AddForeignKey
ALTER TABLE "users" ADD CONSTRAINT "users_org_id_fkey" FOREIGN KEY ("org_id") REFERENCES "organizations"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_org_id_fkey" FOREIGN KEY ("org_id") REFERENCES "organizations"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "event_streams" ADD CONSTRAINT "event_streams_org_id_fkey" FOREIGN KEY ("org_id") REFERENCES "organizations"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "events" ADD CONSTRAINT "events_stream_id_fkey" FOREIGN KEY ("stream_id") REFERENCES "event_streams"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "consumer_groups" ADD CONSTRAINT "consumer_groups_stream_id_fkey" FOREIGN KEY ("stream_id") REFERENCES "event_streams"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "consumer_offsets" ADD CONSTRAINT "consumer_offsets_consumer_group_id_fkey" FOREIGN KEY ("consumer_group_id") REFERENCES "consumer_groups"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "consumer_partition_offsets" ADD CONSTRAINT "consumer_partition_offsets_consumer_group_id_fkey" FOREIGN KEY ("consumer_group_id") REFERENCES "consumer_groups"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
