//! Log output of the daemons: JSON lines by default (for log shippers),
//! human text with `SEALRUN_LOG_FORMAT=text`. `RUST_LOG` filters.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

pub fn init(default: Format) {
    let format = match std::env::var("SEALRUN_LOG_FORMAT").as_deref() {
        Ok("json") => Format::Json,
        Ok("text") => Format::Text,
        _ => default,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour (levels, field names) only where `output::colour_stderr`
        // allows it: not in a pipe, a file or under NO_COLOR.
        .with_ansi(crate::output::colour_stderr());
    // A second init (tests, `dev` calling both daemons) is harmless: ignore it.
    let _ = match format {
        Format::Json => builder.json().with_current_span(false).try_init(),
        Format::Text => builder.with_target(false).try_init(),
    };
}
