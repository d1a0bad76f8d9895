-- What the sandbox shards run before the demo: last release's schema.
CREATE TABLE customers (
  id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email varchar(255) NOT NULL,
  name varchar(80) NOT NULL,
  country char(2) NOT NULL DEFAULT 'US',
  created_at timestamp NOT NULL DEFAULT current_timestamp,
  UNIQUE KEY email (email),
  KEY country (country)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE orders (
  id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  customer_id bigint unsigned NOT NULL,
  status enum('pending','paid','shipped','cancelled') NOT NULL DEFAULT 'pending',
  total_cents bigint NOT NULL,
  currency char(3) NOT NULL DEFAULT 'USD',
  placed_at datetime(3) NOT NULL,
  note text,
  KEY customer_id (customer_id, placed_at),
  KEY status (status),
  CHECK (total_cents >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE order_items (
  order_id bigint unsigned NOT NULL,
  line_no smallint unsigned NOT NULL,
  sku varchar(64) NOT NULL,
  quantity int unsigned NOT NULL DEFAULT 1,
  price_cents bigint NOT NULL,
  PRIMARY KEY (order_id, line_no),
  CONSTRAINT fk_items_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE legacy_carts (
  id bigint unsigned NOT NULL PRIMARY KEY,
  payload blob
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
