PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_counter_metadata` (
	`id` integer PRIMARY KEY NOT NULL,
	`value` integer NOT NULL,
	CONSTRAINT "counter_metadata_id_check" CHECK(id = 1),
	CONSTRAINT "counter_metadata_value_check" CHECK(value BETWEEN -9223372036854775808 AND 9223372036854775807)
);
--> statement-breakpoint
INSERT INTO `__new_counter_metadata`("id", "value") SELECT "id", "value" FROM `counter_metadata`;--> statement-breakpoint
DROP TABLE `counter_metadata`;--> statement-breakpoint
ALTER TABLE `__new_counter_metadata` RENAME TO `counter_metadata`;--> statement-breakpoint
PRAGMA foreign_keys=ON;