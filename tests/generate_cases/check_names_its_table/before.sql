-- drizzle-kit writes check("price_check", sql`${t.price} >= 0`) with the table as qualifier.
CREATE TABLE products (
    id INTEGER PRIMARY KEY NOT NULL,
    price INTEGER NOT NULL,
    name TEXT,
    CONSTRAINT price_check CHECK ("products"."price" >= 0),
    CONSTRAINT "name_check" CHECK (length(products.name) < 50 AND `products`.price < 1000000)
);
