ALTER TABLE `events` ADD `payload` text;--> statement-breakpoint
ALTER TABLE `events` ADD `attempts` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `events` ADD `source` text DEFAULT 'api';--> statement-breakpoint
CREATE INDEX `events_kind` ON `events` (`kind`);