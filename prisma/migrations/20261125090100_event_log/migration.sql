-- The log: one row per record batch, stored exactly as the producer sent it (RecordBatch v2
-- bytes with the broker-assigned base offset). Range-partitioned by created_at, daily; the
-- broker creates partitions ahead of time and there is deliberately no DEFAULT partition, so a
-- row can never land in one. Prisma cannot express the partitioning or the storage setting.

-- CreateTable
CREATE TABLE "event_batches" (
    "stream_id" UUID NOT NULL,
    "partition" INTEGER NOT NULL,
    "base_offset" BIGINT NOT NULL,
    "last_offset" BIGINT NOT NULL,
    "record_count" INTEGER NOT NULL,
    "first_timestamp" TIMESTAMP(3) NOT NULL,
    "max_timestamp" TIMESTAMP(3) NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    -- RecordBatch attributes bits 0-2: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    "codec" SMALLINT NOT NULL,
    -- Idempotent producers: lets the broker rebuild its sequence table after a restart.
    "producer_id" BIGINT NOT NULL DEFAULT -1,
    "producer_epoch" SMALLINT NOT NULL DEFAULT -1,
    "base_sequence" INTEGER NOT NULL DEFAULT -1,
    "batch" BYTEA NOT NULL,

    CONSTRAINT "event_batches_pkey" PRIMARY KEY ("stream_id", "partition", "base_offset", "created_at"),
    CONSTRAINT "event_batches_offsets_check" CHECK ("last_offset" >= "base_offset" AND "base_offset" >= 0),
    CONSTRAINT "event_batches_record_count_check" CHECK ("record_count" > 0)
) PARTITION BY RANGE ("created_at");

-- The batch bytes are already compressed (LZ4): skip TOAST compression, keep out-of-line storage.
ALTER TABLE "event_batches" ALTER COLUMN "batch" SET STORAGE EXTERNAL;

-- AddForeignKey
ALTER TABLE "event_batches" ADD CONSTRAINT "event_batches_stream_id_fkey" FOREIGN KEY ("stream_id") REFERENCES "event_streams"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- Producer ids handed out by InitProducerId; persisted so they survive a restart.
-- CreateTable
CREATE TABLE "producer_ids" (
    "producer_id" BIGSERIAL NOT NULL,
    "producer_epoch" SMALLINT NOT NULL DEFAULT 0,
    "org_id" UUID NOT NULL,
    "transactional_id" VARCHAR(255),
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "producer_ids_pkey" PRIMARY KEY ("producer_id")
);

-- AddForeignKey
ALTER TABLE "producer_ids" ADD CONSTRAINT "producer_ids_org_id_fkey" FOREIGN KEY ("org_id") REFERENCES "organizations"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
