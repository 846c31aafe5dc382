-- Retention: each stream partition's log start offset, Kafka's logStartOffset. Fetch below it is
-- OFFSET_OUT_OF_RANGE and ListOffsets earliest (-2) returns it. It only moves forward, to the first
-- batch younger than the stream's retention_hours; a partition without a row starts at 0. Batches
-- below it may still be stored (their daily partition is shared with streams that need it) until
-- their whole day is dropped.

-- CreateTable
CREATE TABLE "log_start_offsets" (
    "stream_id" UUID NOT NULL,
    "partition" INTEGER NOT NULL,
    "log_start_offset" BIGINT NOT NULL,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "log_start_offsets_pkey" PRIMARY KEY ("stream_id", "partition"),
    CONSTRAINT "log_start_offsets_offset_check" CHECK ("log_start_offset" >= 0)
);

-- AddForeignKey
ALTER TABLE "log_start_offsets" ADD CONSTRAINT "log_start_offsets_stream_id_fkey" FOREIGN KEY ("stream_id") REFERENCES "event_streams"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
