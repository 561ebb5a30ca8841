//! The README's examples run as written: its SQLite and DuckDB queries and its pyarrow line,
//! against the output of `ctgo-export demo`.

use crate::common::*;

/// The text of the first fenced block of `lang` after `heading_text` in the README.
fn readme_block(lang: &str, after: &str) -> String {
    let readme = include_str!("../../README.md");
    let start = readme.find(after).expect("README section");
    let rest = &readme[start..];
    let open = format!("```{lang}\n");
    let b = rest.find(&open).expect("fenced block") + open.len();
    let e = rest[b..].find("```").expect("closing fence");
    rest[b..b + e].to_string()
}

#[test]
fn readme_examples_run_as_written_against_the_demo_output() {
    let t = TestDir::new();
    let out = t.path("ctgo-demo");
    let run = Run::from_output(
        command()
            .args(["demo", "--leads", "600", "--out"])
            .arg(&out)
            .output()
            .unwrap(),
    );
    run.assert_code(0);
    let demo = format!("{}/", out.display());

    // sqlite3 "SELECT ..." — run the quoted SQL.
    let sh = readme_block("sh", "**SQLite** holds");
    let sql = sh
        .split('"')
        .nth(1)
        .expect("quoted SQL in the sqlite3 example");
    let conn = db(&out.join("leads.db"));
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.query_map([], |_| Ok(())).unwrap().count();
    assert_eq!(n, 5);

    let Some(python) = python() else {
        assert!(
            !in_ci(),
            "pyarrow/duckdb are required in CI (scripts/test installs them)"
        );
        eprintln!("skipping the DuckDB/pyarrow examples: no Python with duckdb");
        return;
    };
    let duck_sql =
        readme_block("sql", "The latest version of every lead").replace("ctgo-demo/", &demo);
    let script = format!(
        "import duckdb, pyarrow.dataset as ds\n\
         rows = duckdb.sql({duck_sql:?}).fetchall()\n\
         assert len(rows) == 5, rows\n\
         t = ds.dataset({leads:?}, format='parquet').to_table()\n\
         print(len(rows), t.num_rows)\n",
        leads = out.join("parquet/leads").display().to_string(),
    );
    let o = std::process::Command::new(python)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let printed = String::from_utf8_lossy(&o.stdout);
    let rows: u64 = printed.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(rows >= 600, "{printed}");
}
