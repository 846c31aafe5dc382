-- The analytics projection, per stream and opt-in (`eventflow stream alter --analytics on`): the
-- broker's projector copies the stream's records into `events` (JSONB payloads, GIN index).

-- AlterTable
ALTER TABLE "event_streams" ADD COLUMN "analytics" BOOLEAN NOT NULL DEFAULT false;
