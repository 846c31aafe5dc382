-- An API key's role, as users have one: 'admin' keys may change topics (CreateTopics, DeleteTopics,
-- AlterConfigs, IncrementalAlterConfigs, CreatePartitions); 'viewer' keys may produce, consume and
-- describe. Existing keys keep the powers they had: the default is 'admin'.

-- AlterTable
ALTER TABLE "api_keys" ADD COLUMN "role" VARCHAR(16) NOT NULL DEFAULT 'admin';
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_role_check" CHECK ("role" IN ('admin', 'viewer'));
