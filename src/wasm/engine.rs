//! The process's one wasmtime [`Engine`], its epoch ticker and the shared
//! linker. One engine lets every plugin share compiled code and one ticker
//! thread; the ticker is what turns a runaway guest loop into a trap (the
//! epoch-interruption model, wasmtime's `Config::epoch_interruption`).

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::{Config, Engine};

use super::imports::HostLinker;

/// How often the epoch advances; callback deadlines are multiples of it.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The engine, created with its ticker thread on first use.
pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).expect("static wasmtime config is valid");
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    #[allow(clippy::disallowed_methods)]
                    // why: its own OS thread; epochs tick in wall time, guests run off tokio
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .expect("can spawn the wasm epoch thread at startup");
        engine
    })
}

/// The linker with every host function, built once.
pub(crate) fn linker() -> &'static HostLinker {
    static LINKER: OnceLock<HostLinker> = OnceLock::new();
    LINKER.get_or_init(|| HostLinker::new(engine()).expect("host functions have valid signatures"))
}

/// Epoch ticks for a deadline of `timeout` (at least one full tick).
pub(crate) fn ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}
