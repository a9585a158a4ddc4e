//! Exports `wardgate:policy/hooks@0.0.9`, a contract this gateway does not speak.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

struct Old;

impl exports::wardgate::policy::hooks::Guest for Old {
    fn describe() -> String {
        "old".into()
    }
}

#[cfg(target_arch = "wasm32")]
export!(Old);
