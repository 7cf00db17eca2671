-- A default change rebuilds the table: each qualifier must follow it to `__new_products` and back.
CREATE TABLE products (
    id INTEGER PRIMARY KEY NOT NULL,
    price INTEGER NOT NULL DEFAULT 0,
    name TEXT,
    CONSTRAINT price_check CHECK ("products"."price" >= 0),
    CONSTRAINT "name_check" CHECK (length(products.name) < 50 AND `products`.price < 1000000)
);
