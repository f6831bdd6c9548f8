//! The one-time-code message: built-in templates per language, filled with the app name, the code and its expiry,
//! in the forms mobile operating systems autofill.

use crate::domain::{Channel, Identifier, Locale, OtpCode};

/// A composed one-time-code message. Email providers use all three bodies, SMS providers only `text`.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub to: Identifier,
    /// The code itself, for providers that place it themselves (the console prints it).
    pub code: OtpCode,
    pub language: Language,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What a deployment says about its messages (vars `APP_NAME`, `SMS_ORIGIN_DOMAIN`, `SMS_APP_HASH`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageSettings {
    /// The name users know the app by.
    pub app_name: String,
    /// The web origin the app's associated domain names (e.g. `app.example.com`): adds the origin-bound last line
    /// `@app.example.com #123456` that iOS and Android (WebOTP) autofill into that app or site only.
    pub sms_origin: Option<String>,
    /// The Android app's 11-character SMS Retriever hash, added on its own line so the app reads the code itself.
    pub sms_app_hash: Option<String>,
}

impl MessageSettings {
    /// `sms_origin` must be a bare host name (the origin-bound line is `@host #code`), `sms_app_hash` the
    /// 11-character hash Android's SMS Retriever computes.
    pub fn check(&self) -> Result<(), String> {
        if let Some(host) = &self.sms_origin {
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            if host.len() > 253 || !host.contains('.') || !host.split('.').all(label_ok) {
                return Err(format!("SMS_ORIGIN_DOMAIN {host:?} is not a host name like app.example.com"));
            }
        }
        if let Some(hash) = &self.sms_app_hash {
            if hash.len() != 11 || !hash.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
                return Err("SMS_APP_HASH must be the 11-character app hash of Android's SMS Retriever".into());
            }
        }
        Ok(())
    }
}

/// The languages messages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    English,
    Spanish,
    French,
}

/// One language's wording. `{app}`, `{code}` and `{minutes}` are filled in; SMS wording keeps to the GSM 7-bit
/// alphabet so a message stays one 160-character segment.
struct Template {
    subject: &'static str,
    sms: &'static str,
    intro: &'static str,
    expiry: &'static str,
    ignore: &'static str,
}

const ENGLISH: Template = Template {
    subject: "{code} is your {app} verification code",
    sms: "{code} is your {app} verification code. It expires in {minutes} minutes.",
    intro: "Your {app} verification code is:",
    expiry: "It expires in {minutes} minutes and can be used once.",
    ignore: "If you did not ask for this code, you can ignore this email.",
};

const SPANISH: Template = Template {
    subject: "{code} es tu código de verificación de {app}",
    sms: "{code} es tu clave de acceso a {app}. Caduca en {minutes} minutos.",
    intro: "Tu código de verificación de {app} es:",
    expiry: "Caduca en {minutes} minutos y solo se puede usar una vez.",
    ignore: "Si no lo has solicitado, puedes ignorar este correo.",
};

const FRENCH: Template = Template {
    subject: "{code} est votre code de vérification {app}",
    sms: "{code} est votre code de vérification {app}. Il expire dans {minutes} minutes.",
    intro: "Votre code de vérification {app} est :",
    expiry: "Il expire dans {minutes} minutes et ne peut être utilisé qu'une seule fois.",
    ignore: "Si vous ne l'avez pas demandé, vous pouvez ignorer cet e-mail.",
};

impl Language {
    pub const ALL: [Language; 3] = [Language::English, Language::Spanish, Language::French];

    /// The BCP 47 language subtag.
    pub fn tag(self) -> &'static str {
        match self {
            Language::English => "en",
            Language::Spanish => "es",
            Language::French => "fr",
        }
    }

    fn template(self) -> &'static Template {
        match self {
            Language::English => &ENGLISH,
            Language::Spanish => &SPANISH,
            Language::French => &FRENCH,
        }
    }

    fn of(locale: &Locale) -> Option<Language> {
        Language::ALL.into_iter().find(|l| l.tag() == locale.language())
    }

    /// The request's locale if its language is supported, else the profile's (`profiles.locale`, free text an
    /// administrator typed), else English.
    pub fn choose(requested: Option<&Locale>, profile: Option<&str>) -> Language {
        let from_profile = profile.and_then(|p| Locale::parse(p).ok());
        requested
            .and_then(Language::of)
            .or_else(|| from_profile.as_ref().and_then(Language::of))
            .unwrap_or(Language::English)
    }
}

fn fill(template: &str, app: &str, code: &str, minutes: i64) -> String {
    template.replace("{app}", app).replace("{code}", code).replace("{minutes}", &minutes.to_string())
}

impl Message {
    /// The message carrying `code` to `to`, valid for `ttl_minutes`, in `language`.
    pub fn one_time_code(
        settings: &MessageSettings,
        to: &Identifier,
        code: &OtpCode,
        ttl_minutes: i64,
        language: Language,
    ) -> Message {
        let words = language.template();
        let digits = code.expose();
        let app = settings.app_name.as_str();
        // The code leads the subject: Apple Mail and Gmail offer it for autofill from there.
        let subject = fill(words.subject, app, digits, ttl_minutes);
        let (text, html) = match to.channel() {
            Channel::Sms => {
                let mut text = fill(words.sms, app, digits, ttl_minutes);
                if let Some(hash) = &settings.sms_app_hash {
                    text.push_str("\n\n");
                    text.push_str(hash);
                }
                // The origin-bound line must be the message's last line (WICG sms-one-time-codes).
                if let Some(origin) = &settings.sms_origin {
                    text.push_str(&format!("\n\n@{origin} #{digits}"));
                }
                (text, String::new())
            }
            Channel::Email => {
                let [intro, expiry, ignore] =
                    [words.intro, words.expiry, words.ignore].map(|line| fill(line, app, digits, ttl_minutes));
                let text = format!("{intro}\n\n{digits}\n\n{expiry} {ignore}\n");
                let [intro, expiry, ignore] = [intro, expiry, ignore].map(|line| escape_html(&line));
                let html = format!(
                    "<!doctype html><html lang=\"{lang}\"><body><p>{intro}</p>\
                     <p style=\"font-size:28px;font-weight:bold;letter-spacing:4px\">{digits}</p>\
                     <p>{expiry} {ignore}</p></body></html>",
                    lang = language.tag()
                );
                (text, html)
            }
        };
        Message { to: to.clone(), code: code.clone(), language, subject, text, html }
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message").field("to", &self.to.masked()).field("language", &self.language).finish()
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Email, PhoneNumber};

    fn settings(app: &str) -> MessageSettings {
        MessageSettings { app_name: app.into(), ..MessageSettings::default() }
    }

    fn code() -> OtpCode {
        OtpCode::parse("123456").unwrap()
    }

    fn email() -> Identifier {
        Identifier::Email(Email::parse("a@example.com").unwrap())
    }

    fn phone() -> Identifier {
        Identifier::Phone(PhoneNumber::parse("+1234567890").unwrap())
    }

    /// GSM 03.38's basic character set (plus line feed): what fits 160 characters to a segment.
    const GSM7: &str =
        "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿\
                        abcdefghijklmnopqrstuvwxyzäöñüà";

    #[test]
    fn an_email_carries_the_code_and_expiry_in_subject_text_and_html_in_every_language() {
        for language in Language::ALL {
            let message = Message::one_time_code(&settings("CRM <Lifts>"), &email(), &code(), 10, language);
            assert!(message.subject.starts_with("123456 "), "{language:?}: {}", message.subject);
            assert!(message.subject.contains("CRM <Lifts>"));
            assert!(message.text.contains("123456") && message.text.contains("10 min"), "{language:?}");
            assert!(message.html.contains("123456") && message.html.contains("CRM &lt;Lifts&gt;"), "{language:?}");
            assert!(message.html.contains(&format!("lang=\"{}\"", language.tag())));
            assert!(!format!("{message:?}").contains("123456"));
        }
    }

    #[test]
    fn each_language_has_its_own_wording() {
        let texts: Vec<String> = Language::ALL
            .iter()
            .map(|l| Message::one_time_code(&settings("CRM"), &phone(), &code(), 10, *l).text)
            .collect();
        assert!(texts[0].contains("expires") && texts[1].contains("Caduca") && texts[2].contains("expire dans"));
    }

    #[test]
    fn an_sms_stays_one_gsm_segment_with_the_origin_bound_line_last() {
        let with_origin = MessageSettings {
            app_name: "CRM".into(),
            sms_origin: Some("app.example.com".into()),
            sms_app_hash: Some("FA+9qCX9VSu".into()),
        };
        for language in Language::ALL {
            let message = Message::one_time_code(&with_origin, &phone(), &code(), 10, language);
            assert_eq!(message.text.lines().last(), Some("@app.example.com #123456"), "{language:?}");
            assert!(message.text.contains("\nFA+9qCX9VSu\n"));
            assert!(message.text.chars().all(|c| GSM7.contains(c)), "{language:?}: {}", message.text);
            assert!(message.text.chars().count() <= 160, "{language:?}: {}", message.text.len());
        }
        let plain = Message::one_time_code(&settings("CRM"), &phone(), &code(), 10, Language::English);
        assert!(!plain.text.contains('@') && !plain.text.contains('#'));
    }

    #[test]
    fn the_sms_autofill_settings_must_be_a_host_name_and_an_app_hash() {
        let with = |origin: Option<&str>, hash: Option<&str>| MessageSettings {
            app_name: "CRM".into(),
            sms_origin: origin.map(Into::into),
            sms_app_hash: hash.map(Into::into),
        };
        assert!(with(Some("app.example.com"), Some("FA+9qCX9VSu")).check().is_ok());
        assert!(with(None, None).check().is_ok());
        for bad in ["https://app.example.com", "localhost", "app.example.com/login", "-a.example.com", "a..b"] {
            assert!(with(Some(bad), None).check().is_err(), "{bad}");
        }
        assert!(with(None, Some("short")).check().is_err());
    }

    #[test]
    fn the_language_comes_from_the_request_then_the_profile_then_english() {
        let es = Locale::parse("es-MX").unwrap();
        let de = Locale::parse("de").unwrap();
        assert_eq!(Language::choose(Some(&es), Some("fr")), Language::Spanish);
        assert_eq!(Language::choose(Some(&de), Some("fr-CA")), Language::French, "unsupported request, profile wins");
        assert_eq!(Language::choose(None, Some("fr")), Language::French);
        assert_eq!(Language::choose(None, Some("not a tag")), Language::English);
        assert_eq!(Language::choose(Some(&de), None), Language::English);
        assert_eq!(Language::choose(None, None), Language::English);
    }
}
