/// A language tag in the short BCP 47 form apps send (`en`, `es-MX`, `pt-BR`, `zh-Hant-TW`): a 2–3 letter
/// language, then subtags of 1–8 letters or digits, at most 35 characters. `_` is read as `-` (Android's
/// `Locale.toString()` form). Stored with the language lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Locale(String);

/// The text is not a language tag the service accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocaleError;

/// Longest tag accepted (BCP 47 recommends supporting at least 35 characters).
const MAX_LEN: usize = 35;

impl Locale {
    pub fn parse(raw: &str) -> Result<Locale, LocaleError> {
        let tag = raw.trim();
        if tag.is_empty() || tag.len() > MAX_LEN {
            return Err(LocaleError);
        }
        let mut subtags = tag.split(['-', '_']);
        let language = subtags.next().unwrap_or_default();
        if !(2..=3).contains(&language.len()) || !language.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(LocaleError);
        }
        let mut normalised = language.to_ascii_lowercase();
        for subtag in subtags {
            if subtag.is_empty() || subtag.len() > 8 || !subtag.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(LocaleError);
            }
            normalised.push('-');
            normalised.push_str(subtag);
        }
        Ok(Locale(normalised))
    }

    /// The primary language subtag, lower-case: `es` for `es-MX`.
    pub fn language(&self) -> &str {
        self.0.split('-').next().unwrap_or_default()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_language_tags_are_accepted_and_their_language_read() {
        for (raw, language) in [("en", "en"), ("es-MX", "es"), ("pt_BR", "pt"), ("zh-Hant-TW", "zh"), (" FR ", "fr")] {
            assert_eq!(Locale::parse(raw).unwrap().language(), language, "{raw}");
        }
        assert_eq!(Locale::parse("pt_BR").unwrap().as_str(), "pt-BR");
    }

    #[test]
    fn anything_else_is_refused() {
        for raw in
            ["", "e", "english", "1a", "en-", "en--US", "en-US-toolongsubtag", "en US", "ès", "en;q=0.9", "de-DE,en"]
        {
            assert_eq!(Locale::parse(raw), Err(LocaleError), "{raw:?}");
        }
        assert_eq!(Locale::parse(&format!("en-{}", "a1b2c3d4-".repeat(4))), Err(LocaleError));
    }
}
