//! Foreign keys a shadow table carries (`foreign_keys: carry` in `schemagate.yaml`).
//!
//! `CREATE TABLE … LIKE` leaves foreign keys out, and a constraint name is unique per
//! database, so the shadow cannot hold the table's keys under their own names while the table
//! does. The shadow gets the keys the table will have after the plan (its current ones, less
//! those the statements drop, plus those they add) under temporary names; right after the seal
//! the new table's keys take their own names back (see docs/protocols.md).
//!
//! Everything here is pure: statements in, statements out.

use sqlparser::tokenizer::Token;

use crate::schema::sql::{keyword, quote_ident, significant, tokenize, LineIndex};
use crate::schema::{ForeignKey, Table};

/// One foreign key of the table after the plan, as the shadow holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    /// Its own name, which it takes back after the seal.
    pub name: String,
    /// ``CONSTRAINT `name` FOREIGN KEY (…) REFERENCES …``.
    pub definition: String,
    /// The name the shadow holds it under.
    pub temporary: String,
    /// True when the table does not have this key now: the rows must be checked against it.
    pub new: bool,
}

/// Whether a change of a parent row changes rows of the child table (`ON DELETE`/`ON UPDATE`
/// `CASCADE`, `SET NULL`, `SET DEFAULT`). Such an action fires no trigger, so the capture cannot
/// follow it; see docs/protocols.md, "Foreign keys".
pub fn acts_on_children(definition: &str) -> bool {
    let words: Vec<String> = significant_tokens(definition)
        .unwrap_or_default()
        .iter()
        .map(|t| keyword(t).unwrap_or_default())
        .collect();
    words.windows(3).any(|w| {
        w[0] == "ON"
            && matches!(w[1].as_str(), "DELETE" | "UPDATE")
            && matches!(w[2].as_str(), "CASCADE" | "SET")
    })
}

/// The first key among `keys` of `table` whose InnoDB-generated name (`<table>_ibfk_<n>`)
/// would pass 64 characters once the table is renamed to `renamed`: InnoDB renames such names
/// along with their table and cuts them at 64, so that two of them can collide.
pub fn overflowing_generated_name<'a>(
    table: &str,
    renamed: &str,
    keys: &'a [ForeignKey],
) -> Option<&'a ForeignKey> {
    let generated = format!("{}_ibfk_", table.to_lowercase());
    keys.iter().find(|fk| {
        let suffix = fk
            .name
            .chars()
            .count()
            .saturating_sub(table.chars().count());
        fk.name.to_lowercase().starts_with(&generated) && renamed.chars().count() + suffix > 64
    })
}

impl Carried {
    /// The definition under the temporary name.
    pub fn temporary_definition(&self) -> String {
        rename_definition(&self.definition, &self.temporary)
    }
}

/// The plan's statements with their foreign key clauses taken out (a statement left with no
/// clause is left out), and what those clauses did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub statements: Vec<String>,
    /// Names of the foreign keys dropped.
    pub dropped: Vec<String>,
    /// Definitions (``CONSTRAINT `name` FOREIGN KEY …``) of the foreign keys added.
    pub added: Vec<String>,
}

/// Takes the `DROP FOREIGN KEY` and `ADD [CONSTRAINT name] FOREIGN KEY` clauses out of
/// ``ALTER TABLE `t` …`` statements. Fails on a statement that does not tokenize, and on an
/// added foreign key without a name (plans always name them).
pub fn split(statements: &[String]) -> Result<Split, String> {
    let mut out = Split::default();
    for statement in statements {
        let clauses = clauses(statement)?;
        let Some((head, clauses)) = clauses.split_first() else {
            continue;
        };
        let mut kept = Vec::new();
        for clause in clauses {
            let words = words(clause)?;
            let word = |i: usize| words.get(i).map(String::as_str);
            match (word(0), word(1), word(2)) {
                (Some("DROP"), Some("FOREIGN"), Some("KEY")) => {
                    out.dropped.push(name_after(clause, 3)?);
                }
                (Some("ADD"), Some("CONSTRAINT"), _) if word(3) == Some("FOREIGN") => {
                    let definition = clause.trim()[3..].trim_start().to_string();
                    out.added.push(definition);
                }
                (Some("ADD"), Some("FOREIGN"), _) => {
                    return Err(format!(
                        "the clause `{}` adds a foreign key without a name; name it \
                         (CONSTRAINT `name` FOREIGN KEY …)",
                        clause.trim()
                    ));
                }
                _ => kept.push(clause.trim()),
            }
        }
        if !kept.is_empty() {
            out.statements
                .push(format!("{} {}", head.trim_end(), kept.join(", ")));
        }
    }
    Ok(out)
}

/// The foreign keys the table has after `statements`, with temporary names
/// `{prefix}_f0`, `{prefix}_f1`, … (the caller keeps `prefix` within 60 characters).
pub fn carried(prefix: &str, original: &Table, split: &Split) -> Result<Vec<Carried>, String> {
    let mut keys: Vec<(String, String, bool)> = original
        .foreign_keys
        .iter()
        .filter(|fk| !split.dropped.iter().any(|d| same_name(d, &fk.name)))
        .map(|fk| (fk.name.clone(), fk.definition.clone(), false))
        .collect();
    for definition in &split.added {
        let name = name_after(definition, 1)?;
        let new = !original
            .foreign_keys
            .iter()
            .any(|fk| rename_definition(&fk.definition, "") == rename_definition(definition, ""));
        keys.push((name, definition.clone(), new));
    }
    if keys.len() > 99 {
        return Err("the table would have more than 99 foreign keys".to_string());
    }
    Ok(keys
        .into_iter()
        .enumerate()
        .map(|(i, (name, definition, new))| Carried {
            name,
            definition,
            temporary: format!("{prefix}_f{i}"),
            new,
        })
        .collect())
}

/// ``ALTER TABLE … DROP FOREIGN KEY `temporary`, ADD CONSTRAINT `name` …`` clauses that give
/// the keys their own names back (only for those `live_names` still shows under the
/// temporary one), or `None` when nothing is left to rename.
pub fn restore_clauses(keys: &[Carried], live_names: &[String]) -> Option<String> {
    let clauses: Vec<String> = keys
        .iter()
        .filter(|k| live_names.iter().any(|n| same_name(n, &k.temporary)))
        .map(|k| {
            format!(
                "DROP FOREIGN KEY {}, ADD {}",
                quote_ident(&k.temporary),
                k.definition
            )
        })
        .collect();
    (!clauses.is_empty()).then(|| clauses.join(", "))
}

/// The text of a statement cut at its top-level commas, the first part ending after the
/// table name (``ALTER TABLE `t` ``): each clause as written.
fn clauses(statement: &str) -> Result<Vec<&str>, String> {
    let tokens = tokenize(statement).map_err(|e| format!("cannot read `{statement}`: {e}"))?;
    let index = LineIndex::new(statement);
    let mut cuts = Vec::new();
    let mut depth = 0i32;
    let mut seen = 0;
    for t in &tokens {
        if !significant(&t.token) {
            continue;
        }
        seen += 1;
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => cuts.push((index.offset(t.span.start), 1)),
            _ => {}
        }
        // After ALTER TABLE `t`: the head ends here.
        if seen == 3 {
            cuts.push((index.offset(t.span.end), 0));
        }
    }
    let mut out = Vec::new();
    let mut start = 0;
    for (at, width) in cuts {
        out.push(&statement[start..at]);
        start = at + width;
    }
    out.push(statement[start..].trim_end_matches(|c: char| c == ';' || c.is_whitespace()));
    Ok(out.into_iter().filter(|c| !c.trim().is_empty()).collect())
}

/// Upper-cased keywords of a clause, and `` `name` `` for quoted words (empty string for
/// anything else), in order.
fn words(clause: &str) -> Result<Vec<String>, String> {
    Ok(significant_tokens(clause)?
        .iter()
        .map(|t| keyword(t).unwrap_or_default())
        .collect())
}

fn significant_tokens(text: &str) -> Result<Vec<Token>, String> {
    Ok(tokenize(text)
        .map_err(|e| format!("cannot read `{text}`: {e}"))?
        .into_iter()
        .map(|t| t.token)
        .filter(significant)
        .collect())
}

/// The name that is the `at`-th significant token of `text`.
fn name_after(text: &str, at: usize) -> Result<String, String> {
    match significant_tokens(text)?.get(at) {
        Some(Token::Word(w)) => Ok(w.value.clone()),
        _ => Err(format!("no constraint name in `{}`", text.trim())),
    }
}

/// ``CONSTRAINT `x` …`` with `x` replaced by `name` (`""`: the name left out, to compare).
fn rename_definition(definition: &str, name: &str) -> String {
    let rest = definition.trim_start();
    let Some(after) = rest
        .get(..10)
        .filter(|head| head.eq_ignore_ascii_case("CONSTRAINT"))
        .map(|_| rest[10..].trim_start())
    else {
        return definition.to_string();
    };
    let tail = match after.strip_prefix('`') {
        Some(quoted) => match quoted.find('`') {
            Some(end) => &quoted[end + 1..],
            None => return definition.to_string(),
        },
        None => after.trim_start_matches(|c: char| !c.is_whitespace()),
    };
    format!("CONSTRAINT {}{tail}", quote_ident(name))
}

fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(sql: &str) -> Table {
        Table::parse_canonical(sql).unwrap_or_else(|e| panic!("{e:?}"))
    }

    const CHILD: &str = "CREATE TABLE `orders` (
  `id` int(11) NOT NULL,
  `customer_id` int(11) NOT NULL,
  `shop_id` int(11) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `customer_id` (`customer_id`),
  KEY `shop_id` (`shop_id`),
  CONSTRAINT `fk_customer` FOREIGN KEY (`customer_id`) REFERENCES `customers` (`id`) ON DELETE CASCADE,
  CONSTRAINT `fk_shop` FOREIGN KEY (`shop_id`) REFERENCES `shops` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";

    #[test]
    fn foreign_key_clauses_are_taken_out_of_statements() {
        let statements = vec![
            "ALTER TABLE `orders` DROP FOREIGN KEY `fk_shop`".to_string(),
            "ALTER TABLE `orders` ADD COLUMN `note` varchar(10) DEFAULT 'a,b' AFTER `shop_id`, \
             MODIFY COLUMN `shop_id` bigint(20) DEFAULT NULL"
                .to_string(),
            "ALTER TABLE `orders` ADD CONSTRAINT `fk_shop2` FOREIGN KEY (`shop_id`, `id`) \
             REFERENCES `shops` (`id`, `x`) ON DELETE SET NULL, ADD CONSTRAINT `c` CHECK (`id` > 0)"
                .to_string(),
        ];
        let split = split(&statements).unwrap();
        assert_eq!(split.dropped, ["fk_shop"]);
        assert_eq!(
            split.added,
            ["CONSTRAINT `fk_shop2` FOREIGN KEY (`shop_id`, `id`) REFERENCES `shops` (`id`, `x`) ON DELETE SET NULL"]
        );
        assert_eq!(
            split.statements,
            [
                "ALTER TABLE `orders` ADD COLUMN `note` varchar(10) DEFAULT 'a,b' AFTER `shop_id`, MODIFY COLUMN `shop_id` bigint(20) DEFAULT NULL",
                "ALTER TABLE `orders` ADD CONSTRAINT `c` CHECK (`id` > 0)",
            ]
        );
        let unnamed = vec!["ALTER TABLE `t` ADD FOREIGN KEY (`a`) REFERENCES `p` (`id`)".into()];
        assert!(super::split(&unnamed)
            .unwrap_err()
            .contains("without a name"));
    }

    #[test]
    fn generated_key_names_that_a_rename_would_overflow_are_found() {
        let keys = table(CHILD).foreign_keys;
        let named = table(&CHILD.replace("`fk_customer`", "`orders_ibfk_12`")).foreign_keys;
        let long = format!("_sg0123456789ab_old_{}", "o".repeat(44));
        assert_eq!(overflowing_generated_name("orders", &long, &keys), None);
        let found = overflowing_generated_name("orders", &long, &named);
        assert_eq!(found.map(|fk| fk.name.as_str()), Some("orders_ibfk_12"));
        assert_eq!(
            overflowing_generated_name("orders", "_sg0123456789ab_old_orders", &named),
            None
        );
    }

    #[test]
    fn the_shadow_carries_the_keys_the_table_has_after_the_plan() {
        let statements = vec![
            "ALTER TABLE `orders` DROP FOREIGN KEY `fk_shop`".to_string(),
            "ALTER TABLE `orders` ADD CONSTRAINT `fk_shop2` FOREIGN KEY (`shop_id`) REFERENCES `shops` (`id`)".to_string(),
            "ALTER TABLE `orders` ADD CONSTRAINT `fk_other` FOREIGN KEY (`id`) REFERENCES `others` (`id`)".to_string(),
        ];
        let keys = carried("_sg_x", &table(CHILD), &split(&statements).unwrap()).unwrap();
        let names: Vec<(&str, &str, bool)> = keys
            .iter()
            .map(|k| (k.name.as_str(), k.temporary.as_str(), k.new))
            .collect();
        // A key renamed with the same definition holds no new rows to check.
        assert_eq!(
            names,
            [
                ("fk_customer", "_sg_x_f0", false),
                ("fk_shop2", "_sg_x_f1", false),
                ("fk_other", "_sg_x_f2", true),
            ]
        );
        assert!(acts_on_children(&keys[0].definition));
        assert!(!acts_on_children(&keys[1].definition));
        assert!(acts_on_children(
            "CONSTRAINT `x` FOREIGN KEY (`a`) REFERENCES `p` (`id`) ON UPDATE SET NULL"
        ));
        assert!(!acts_on_children(
            "CONSTRAINT `x` FOREIGN KEY (`a`) REFERENCES `p` (`id`) ON DELETE NO ACTION"
        ));
        assert_eq!(
            keys[0].temporary_definition(),
            "CONSTRAINT `_sg_x_f0` FOREIGN KEY (`customer_id`) REFERENCES `customers` (`id`) ON DELETE CASCADE"
        );
        let live = vec!["_sg_x_f0".to_string(), "fk_shop2".to_string()];
        assert_eq!(
            restore_clauses(&keys, &live).as_deref(),
            Some("DROP FOREIGN KEY `_sg_x_f0`, ADD CONSTRAINT `fk_customer` FOREIGN KEY (`customer_id`) REFERENCES `customers` (`id`) ON DELETE CASCADE")
        );
        assert_eq!(restore_clauses(&keys, &["fk_customer".into()]), None);
    }
}
