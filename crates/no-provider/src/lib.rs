//! Nothing here: the tests in `tests/` build tower-mtls with neither bundled provider and
//! serve with one the application brings (see `Cargo.toml`).
