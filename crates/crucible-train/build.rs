//! Writes an rpath to libtorch's lib folder into every binary of this package (the
//! `crucible-train` binary, tests, examples), so they run without LD_LIBRARY_PATH.
//!
//! The folder is the one torch-sys linked against (it reports it as
//! `DEP_TORCH_SYS_LIBTORCH_LIB`); failing that, `$LIBTORCH/lib`, where LIBTORCH comes from
//! the environment or, by default, `.cargo/config.toml` (`.libtorch/torch`, filled by
//! `scripts/setup-libtorch.sh`).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=DEP_TORCH_SYS_LIBTORCH_LIB");
    let lib = std::env::var_os("DEP_TORCH_SYS_LIBTORCH_LIB")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("LIBTORCH").map(|d| PathBuf::from(d).join("lib")));
    let Some(lib) = lib else {
        // torch-sys has already failed with its own explanation by the time this runs.
        println!("cargo:warning=no libtorch found: run scripts/setup-libtorch.sh");
        return;
    };
    // An absolute path: the binaries are run from target/ and from test harnesses whose
    // working folder varies, so $ORIGIN-relative paths would not hold.
    let lib = lib.canonicalize().unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // libtorch_cpu's own RUNPATH finds the NVIDIA runtime it links (cudart, cupti) next to
    // it, so only this one folder is needed.

    // scripts/build-gpu-binary.sh links against a CUDA libtorch whose cuBLAS, cuDNN, ...
    // are not installed here but are on the GPU machine: let the linker leave their
    // symbols to the loader there.
    println!("cargo:rerun-if-env-changed=CRUCIBLE_TORCH_PORTABLE");
    if std::env::var_os("CRUCIBLE_TORCH_PORTABLE").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--allow-shlib-undefined");
    }
}
