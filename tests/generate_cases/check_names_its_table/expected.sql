PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_products` (
	`id` integer PRIMARY KEY NOT NULL,
	`price` integer DEFAULT 0 NOT NULL,
	`name` text,
	CONSTRAINT "name_check" CHECK(length("__new_products".name) < 50 AND "__new_products".price < 1000000),
	CONSTRAINT "price_check" CHECK("__new_products"."price" >= 0)
);
--> statement-breakpoint
INSERT INTO `__new_products`("id", "price", "name") SELECT "id", "price", "name" FROM `products`;--> statement-breakpoint
DROP TABLE `products`;--> statement-breakpoint
ALTER TABLE `__new_products` RENAME TO `products`;--> statement-breakpoint
PRAGMA foreign_keys=ON;