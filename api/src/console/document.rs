//! The `<head>` every console document has: the one place its stylesheet,
//! script and viewport are named.

use maud::{Markup, html};

/// The head of a document titled `title` (`… · sealrun`); with `script`,
/// the console's script too (pages; not the sign-in or error pages).
pub(crate) fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · sealrun" }
            link rel="stylesheet" href="/ui/assets/console.css";
            @if script { script src="/ui/assets/console.js" defer {} }
        }
    }
}
