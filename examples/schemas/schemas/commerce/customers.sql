-- Written the way people write SQL: lowercase, no backticks, inline keys.
create table customers (
  id bigint unsigned not null auto_increment primary key,
  email varchar(255) not null,
  display_name varchar(120) not null, -- schemagate:renamed-from name
  country char(2) not null default 'US',
  marketing_opt_in bool not null default false,
  created_at timestamp not null default current_timestamp,
  updated_at timestamp null on update current_timestamp,
  unique key (email),
  index (country, created_at)
) engine=innodb default charset=utf8mb4;
