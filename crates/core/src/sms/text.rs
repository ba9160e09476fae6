//! Text as the classifiers read it: full-width forms folded to ASCII, every
//! kind of dash to `-`, ASCII letters lower-cased. One character in, one
//! character out, so positions stay comparable.

/// `text` folded for matching (see the module doc).
pub fn fold(text: &str) -> String {
    text.chars().map(fold_char).collect()
}

pub fn fold_char(c: char) -> char {
    let c = match c {
        // Full-width ASCII variants (！ to ～).
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE63}' | '\u{2E3A}' | '\u{2E3B}' => '-',
        _ => c,
    };
    c.to_ascii_lowercase()
}

/// Whether `c` can be part of a code-like token (`12-3-4567`, `a12-3456`).
pub fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_width_dashes_and_case() {
        assert_eq!(fold("取件码：１２－３－４５６７"), "取件码:12-3-4567");
        assert_eq!(fold("Code A12—3456"), "code a12-3456");
        assert_eq!(fold("凭码\u{3000}８８３１０２"), "凭码 883102");
        assert_eq!(fold("").len(), 0);
    }

    #[test]
    fn one_char_in_one_char_out() {
        for s in ["取件码：１２－３", "abc", "【菜鸟驿站】Ｘ"] {
            assert_eq!(fold(s).chars().count(), s.chars().count());
        }
    }
}
