//! The node's slog logger: terminal or JSON lines, asynchronous with a bounded channel (a burst of
//! decisions drops log lines, never stalls the packet path), and the guard that flushes it when the
//! node stops (the last lines of a clean exit, such as the leadership handover, are not lost).

use leasehold_config::{LogFormat, LogLevel};
use slog::{o, Drain, Level, Logger};

const LOG_CHANNEL_SIZE: usize = 16_384;

/// The logger, and the guard whose drop writes out what is still queued (keep it until the end).
pub fn logger(format: LogFormat, level: LogLevel) -> (Logger, slog_async::AsyncGuard) {
    let level = match level {
        LogLevel::Error => Level::Error,
        LogLevel::Warning => Level::Warning,
        LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
        LogLevel::Trace => Level::Trace,
    };
    let (drain, guard) = match format {
        LogFormat::Term => {
            let decorator = slog_term::PlainDecorator::new(std::io::stderr());
            let drain = slog_term::FullFormat::new(decorator).build().fuse();
            slog_async::Async::new(drain)
                .chan_size(LOG_CHANNEL_SIZE)
                .overflow_strategy(slog_async::OverflowStrategy::Drop)
                .build_with_guard()
        }
        LogFormat::Json => {
            let drain = slog_json::Json::new(std::io::stderr()).add_default_keys().build().fuse();
            slog_async::Async::new(drain)
                .chan_size(LOG_CHANNEL_SIZE)
                .overflow_strategy(slog_async::OverflowStrategy::Drop)
                .build_with_guard()
        }
    };
    // After the guard is dropped a thread still logging gets an error from the closed channel: ignored,
    // not a panic (which would abort a clean exit).
    (Logger::root(drain.ignore_res().filter_level(level).fuse(), o!()), guard)
}
