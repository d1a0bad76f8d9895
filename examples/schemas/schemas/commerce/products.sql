-- As `SHOW CREATE TABLE` or `skeema pull` print it.
CREATE TABLE `products` (
  `sku` varchar(64) NOT NULL,
  `title` varchar(200) NOT NULL,
  `description` text DEFAULT NULL,
  `price_cents` bigint(20) NOT NULL,
  `weight_grams` int(10) unsigned DEFAULT NULL,
  PRIMARY KEY (`sku`),
  FULLTEXT KEY `ft_title_description` (`title`,`description`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci COMMENT='catalog';
