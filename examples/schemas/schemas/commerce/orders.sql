create table orders (
  id bigint unsigned not null auto_increment primary key,
  customer_id bigint unsigned not null,
  status enum('pending', 'paid', 'shipped', 'cancelled', 'refunded') not null default 'pending',
  total_cents bigint not null,
  currency char(3) not null default 'USD',
  placed_at datetime(3) not null,
  note text,
  index (customer_id, placed_at),
  index (status),
  check (total_cents >= 0)
);

create table order_items (
  order_id bigint unsigned not null,
  line_no smallint unsigned not null,
  sku varchar(64) not null,
  quantity int unsigned not null default 1,
  price_cents bigint not null,
  primary key (order_id, line_no),
  constraint fk_items_order foreign key (order_id) references orders (id) on delete cascade
);
