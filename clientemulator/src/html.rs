//! `--html FILE`: the report as a picture, one self-contained HTML file.
//!
//! The file is `report.html` (built into the binary) with the report's JSON,
//! exactly what `--json` prints, embedded in it; the page's own script draws
//! the cards, tables and SVG charts from that JSON when the file is opened.
//! So the picture can never say something the JSON report does not, and the
//! file needs no network, no server and no other file: it can be mailed,
//! attached to a CI run, or opened from a container's volume.

use crate::report::Report;

/// The page, with [`PLACEHOLDER`] where the report goes.
const TEMPLATE: &str = include_str!("report.html");

/// Where, in [`TEMPLATE`], the report's JSON is put.
const PLACEHOLDER: &str = "/*REPORT*/";

/// The whole HTML file for `report`.
pub fn render(report: &Report) -> String {
    let json = serde_json::to_string(report).expect("a report always serialises");
    // Inside <script> only "</" could end the element early (a client id or
    // an error message may hold one); in JSON, `<` only occurs inside
    // strings, where the escape \u003c reads back as the same character.
    let json = json.replace('<', "\\u003c");
    TEMPLATE.replacen(PLACEHOLDER, &json, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_has_one_placeholder_inside_the_data_script() {
        assert_eq!(TEMPLATE.matches(PLACEHOLDER).count(), 1);
        let at = TEMPLATE.find(PLACEHOLDER).unwrap();
        assert!(TEMPLATE[..at].ends_with(r#"<script type="application/json" id="report">"#));
        for fetch in [" src=", "<link", "url(", "fetch(", "import "] {
            assert!(
                !TEMPLATE.contains(fetch),
                "nothing is loaded from elsewhere: {fetch}"
            );
        }
    }
}
