//! The node's slog logger: terminal or JSON lines, asynchronous with a bounded channel (a burst of
//! decisions drops log lines, never stalls the packet path).

use leasehold_config::{LogFormat, LogLevel};
use slog::{o, Drain, Level, Logger};

const LOG_CHANNEL_SIZE: usize = 16_384;

pub fn logger(format: LogFormat, level: LogLevel) -> Logger {
    let level = match level {
        LogLevel::Error => Level::Error,
        LogLevel::Warning => Level::Warning,
        LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
        LogLevel::Trace => Level::Trace,
    };
    let drain = match format {
        LogFormat::Term => {
            let decorator = slog_term::PlainDecorator::new(std::io::stderr());
            let drain = slog_term::FullFormat::new(decorator).build().fuse();
            slog_async::Async::new(drain)
                .chan_size(LOG_CHANNEL_SIZE)
                .overflow_strategy(slog_async::OverflowStrategy::Drop)
                .build()
                .fuse()
        }
        LogFormat::Json => {
            let drain = slog_json::Json::new(std::io::stderr()).add_default_keys().build().fuse();
            slog_async::Async::new(drain)
                .chan_size(LOG_CHANNEL_SIZE)
                .overflow_strategy(slog_async::OverflowStrategy::Drop)
                .build()
                .fuse()
        }
    };
    Logger::root(drain.filter_level(level).fuse(), o!())
}
