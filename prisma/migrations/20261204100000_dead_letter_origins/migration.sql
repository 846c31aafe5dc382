-- Dead letters from consumers (protocol/dead-letters.md): a record produced to a stream's
-- `<name>.dlq` stream gets a dead_letter_events row in the flush's transaction. The seed's columns
-- stay as they are; these say where the dead letter is stored, where the event came from, and
-- whether it was replayed. All nullable: a row written by another path (schema validation) may
-- have no dead-letter record or no known origin.

-- AlterTable
ALTER TABLE "dead_letter_events"
    ADD COLUMN "dlq_stream_id" UUID,
    ADD COLUMN "dlq_partition" INTEGER,
    ADD COLUMN "dlq_offset" BIGINT,
    ADD COLUMN "original_topic" TEXT,
    ADD COLUMN "original_stream_id" UUID,
    ADD COLUMN "original_partition" INTEGER,
    ADD COLUMN "original_offset" BIGINT,
    ADD COLUMN "replayed_at" TIMESTAMP(3),
    ADD COLUMN "replayed_offset" BIGINT;

-- CreateIndex
CREATE INDEX "dead_letter_events_dlq_stream_id_dlq_partition_dlq_offset_idx"
    ON "dead_letter_events"("dlq_stream_id", "dlq_partition", "dlq_offset");

-- AddForeignKey
ALTER TABLE "dead_letter_events" ADD CONSTRAINT "dead_letter_events_dlq_stream_id_fkey"
    FOREIGN KEY ("dlq_stream_id") REFERENCES "event_streams"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "dead_letter_events" ADD CONSTRAINT "dead_letter_events_original_stream_id_fkey"
    FOREIGN KEY ("original_stream_id") REFERENCES "event_streams"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
