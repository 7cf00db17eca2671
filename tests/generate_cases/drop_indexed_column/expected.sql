DROP INDEX `events_legacy`;--> statement-breakpoint
ALTER TABLE `events` DROP COLUMN `legacy`;