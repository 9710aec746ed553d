//! Nothing here: the model-checked test is `tests/push.rs`.
