//! Fuzz target: any bytes as SQL text are parsed with Brooklet's dialect
//! and, when they parse, every query statement is planned against a fixed
//! catalog (sources of every connector-independent shape, with and without
//! a watermark). Nothing may panic or overflow the stack: bad input must
//! come back as an error.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use brooklet::StreamingContext;
use libfuzzer_sys::fuzz_target;

struct Catalog {
    runtime: tokio::runtime::Runtime,
    ctx: StreamingContext,
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ctx = runtime.block_on(async {
            let ctx = StreamingContext::builder(Duration::from_secs(1))
                .notices(brooklet::Notices::new(|_| {}))
                .build()
                .unwrap();
            ctx.execute(
                "CREATE SOURCE lines (line TEXT) WITH (connector = 'memory');
                 CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP NOT NULL,
                   WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH (connector = 'memory', format = 'csv');
                 CREATE SOURCE events (k TEXT, v BIGINT, ts BIGINT, WATERMARK FOR ts)
                   WITH (connector = 'memory', format = 'csv')",
            )
            .await
            .unwrap();
            ctx
        });
        Catalog { runtime, ctx }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(statements) = brooklet::sql::parse_statements(text) else {
        return;
    };
    let catalog = catalog();
    for statement in statements {
        if matches!(statement.statement, brooklet::sql::Statement::Query { .. }) {
            let _ = catalog.runtime.block_on(catalog.ctx.sql(&statement.text));
        }
    }
});
