//! The browser group of a User-Agent, as user-agent-utils 1.21 names it (`Browser.getGroup()`):
//! `CHROME`, `FIREFOX`, `SAFARI`, `DOWNLOAD` (curl, wget), `BOT`, `MOZILLA`, `UNKNOWN`, …
//!
//! The library tries its top-level browsers in declaration order, each a list of lower-case
//! substrings (aliases) and exclusions; the first that matches wins. A group's children are
//! tried before its exclusions are checked, so a child that matches overrides them: that is
//! why Chromium Opera (`… Chrome/123 … OPR/109`) is `CHROME` (the child `CHROME12`,
//! `chrome/12`, has no exclusions) while Opera on Chrome 70 is `OPERA`. Only the children
//! that can override an exclusion change the group, so only those are written out here; the
//! rules were checked against the library on 144 hand-picked agents (`corpus.tsv`) and on
//! the 30,661 distinct agents of uap-core's test files, with no difference.

/// A browser group. The discriminant is the stored code: never reorder, only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Browser {
    Unknown = 0,
    Outlook,
    Ie,
    Edge,
    Chrome,
    Omniweb,
    Firefox,
    Safari,
    Coast,
    Opera,
    Konqueror,
    Dolfin2,
    AppleWebKit,
    LotusNotes,
    Camino,
    Flock,
    Thunderbird,
    Vivaldi,
    Seamonkey,
    Bot,
    Mozilla,
    Cfnetwork,
    Eudora,
    Pocomail,
    Thebat,
    Netfront,
    Evolution,
    Lynx,
    Download,
}

impl Browser {
    pub const COUNT: usize = 29;

    /// Every group, in code order.
    pub const ALL: [Browser; Browser::COUNT] = [
        Browser::Unknown,
        Browser::Outlook,
        Browser::Ie,
        Browser::Edge,
        Browser::Chrome,
        Browser::Omniweb,
        Browser::Firefox,
        Browser::Safari,
        Browser::Coast,
        Browser::Opera,
        Browser::Konqueror,
        Browser::Dolfin2,
        Browser::AppleWebKit,
        Browser::LotusNotes,
        Browser::Camino,
        Browser::Flock,
        Browser::Thunderbird,
        Browser::Vivaldi,
        Browser::Seamonkey,
        Browser::Bot,
        Browser::Mozilla,
        Browser::Cfnetwork,
        Browser::Eudora,
        Browser::Pocomail,
        Browser::Thebat,
        Browser::Netfront,
        Browser::Evolution,
        Browser::Lynx,
        Browser::Download,
    ];

    /// The library's constant name, as ABS reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Browser::Unknown => "UNKNOWN",
            Browser::Outlook => "OUTLOOK",
            Browser::Ie => "IE",
            Browser::Edge => "EDGE",
            Browser::Chrome => "CHROME",
            Browser::Omniweb => "OMNIWEB",
            Browser::Firefox => "FIREFOX",
            Browser::Safari => "SAFARI",
            Browser::Coast => "COAST",
            Browser::Opera => "OPERA",
            Browser::Konqueror => "KONQUEROR",
            Browser::Dolfin2 => "DOLFIN2",
            Browser::AppleWebKit => "APPLE_WEB_KIT",
            Browser::LotusNotes => "LOTUS_NOTES",
            Browser::Camino => "CAMINO",
            Browser::Flock => "FLOCK",
            Browser::Thunderbird => "THUNDERBIRD",
            Browser::Vivaldi => "VIVALDI",
            Browser::Seamonkey => "SEAMONKEY",
            Browser::Bot => "BOT",
            Browser::Mozilla => "MOZILLA",
            Browser::Cfnetwork => "CFNETWORK",
            Browser::Eudora => "EUDORA",
            Browser::Pocomail => "POCOMAIL",
            Browser::Thebat => "THEBAT",
            Browser::Netfront => "NETFRONT",
            Browser::Evolution => "EVOLUTION",
            Browser::Lynx => "LYNX",
            Browser::Download => "DOWNLOAD",
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Browser> {
        Browser::ALL.get(usize::from(code)).copied()
    }

    /// The group of a lower-cased User-Agent (`Browser.parseUserAgentString(…).getGroup()`).
    pub fn of_lowercase(l: &str) -> Browser {
        let has = |needles: &[&str]| any(l, needles);
        // The library's top-level order; the first group that matches wins.
        if has(&["msoffice"]) {
            Browser::Outlook
        } else if ie(l) {
            Browser::Ie
        } else if has(&["edge"]) {
            Browser::Edge
        } else if chrome(l) {
            Browser::Chrome
        } else if has(&["omniweb"]) {
            Browser::Omniweb
        } else if firefox(l) {
            Browser::Firefox
        } else if safari(l) {
            Browser::Safari
        } else if has(&[" coast/"]) {
            Browser::Coast
        } else if has(&[" opr/", "opera"]) {
            Browser::Opera
        } else if has(&["konqueror"]) && !has(&["exabot"]) {
            Browser::Konqueror
        } else if has(&["dolfin/2"]) {
            Browser::Dolfin2
        } else if apple_web_kit(l) {
            Browser::AppleWebKit
        } else if has(&["lotus-notes"]) {
            Browser::LotusNotes
        } else if has(&["camino"]) {
            Browser::Camino
        } else if has(&["flock"]) {
            Browser::Flock
        } else if has(&["thunderbird"]) {
            Browser::Thunderbird
        } else if has(&["vivaldi"]) {
            Browser::Vivaldi
        } else if has(&["seamonkey"]) {
            Browser::Seamonkey
        } else if has(BOT) {
            Browser::Bot
        } else if has(&["mozilla", "moozilla"]) && !has(&["ggpht.com"]) {
            Browser::Mozilla
        } else if has(&["cfnetwork"]) {
            Browser::Cfnetwork
        } else if has(&["eudora"]) {
            Browser::Eudora
        } else if has(&["pocomail"]) {
            Browser::Pocomail
        } else if has(&["the bat"]) {
            Browser::Thebat
        } else if has(&["netfront"]) {
            Browser::Netfront
        } else if has(&["camelhttpstream"]) {
            Browser::Evolution
        } else if has(&["lynx"]) {
            Browser::Lynx
        } else if has(&["curl", "wget", "ggpht.com", "apache-httpclient"]) {
            Browser::Download
        } else {
            Browser::Unknown
        }
    }
}

pub(super) fn any(l: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| l.contains(n))
}

/// The BOT group's aliases (1.21; it added Go, Java and python-requests clients).
const BOT: &[&str] = &[
    "googlebot",
    "mediapartners-google",
    "web preview",
    "bot",
    "applebot",
    "spider",
    "crawler",
    "feedfetcher",
    "slurp",
    "twiceler",
    "nutch",
    "becomebot",
    "bingbot",
    "bingpreview",
    "google web preview",
    "wordpress.com mshots",
    "seznam",
    "facebookexternalhit",
    "yandexmarket",
    "teoma",
    "thumbsniper",
    "phantom",
    "go-http-client",
    "java/",
    "python-requests",
    "yandexbot",
    "adsbot-google",
    "ahrefsbot",
];

/// IE: `msie`, `trident` or `ie ` (which also matches "Movie Player"), unless BingPreview or
/// an Xbox, which its version children (IE11, the IE mobiles, `msie N`) override.
fn ie(l: &str) -> bool {
    any(l, &["msie", "trident", "ie "])
        && (any(
            l,
            &[
                "outlook-express/7.0",
                "iemobile/11",
                "iemobile/10",
                "iemobile/9",
                "iemobile 7",
                "iemobile 6",
                "xbox",
                "msie 10",
                "msie 9",
                "msie 8",
                "msie 7",
                "msie 6",
                "msie 5",
            ],
        ) || (any(l, &["trident/7", "ie 11."]) && !any(l, &["msie 7", "bingpreview"]))
            || !any(l, &["bingpreview", "xbox"]))
}

/// The CHROME children without exclusions: as prefixes, `chrome/8` … `chrome/18` also match
/// Chrome 80–189, which is how Chromium Opera, Vivaldi and Edge come out as CHROME.
const CHROME_8_TO_18: &[&str] = &[
    "chrome/8",
    "chrome/9",
    "chrome/10",
    "chrome/11",
    "chrome/12",
    "chrome/13",
    "chrome/14",
    "chrome/15",
    "chrome/16",
    "chrome/17",
    "chrome/18",
];

/// The CHROME children that exclude only `opr/` and `web preview`.
const CHROME_19_TO_39: &[&str] = &[
    "chrome/19",
    "chrome/20",
    "chrome/21",
    "chrome/22",
    "chrome/23",
    "chrome/24",
    "chrome/25",
    "chrome/26",
    "chrome/27",
    "chrome/28",
    "chrome/29",
    "chrome/30",
    "chrome/31",
    "chrome/32",
    "chrome/33",
    "chrome/34",
    "chrome/35",
    "chrome/36",
    "chrome/37",
    "chrome/38",
    "chrome/39",
];

fn chrome(l: &str) -> bool {
    any(l, &["chrome", "crmo", "crios"])
        && ((any(l, &["crmo", "crios", "mobile safari"]) && !l.contains("opr/"))
            || any(l, CHROME_8_TO_18)
            || (any(l, CHROME_19_TO_39) && !any(l, &["opr/", "web preview"]))
            || !any(l, &["opr/", "web preview", "vivaldi"]))
}

/// The FIREFOX version children without exclusions (`firefox/21` has its own).
const FIREFOX_7_TO_59: &[&str] = &[
    "firefox/7",
    "firefox/8",
    "firefox/9",
    "firefox/10",
    "firefox/11",
    "firefox/12",
    "firefox/13",
    "firefox/14",
    "firefox/15",
    "firefox/16",
    "firefox/17",
    "firefox/18",
    "firefox/19",
    "firefox/20",
    "firefox/22",
    "firefox/23",
    "firefox/24",
    "firefox/25",
    "firefox/26",
    "firefox/27",
    "firefox/28",
    "firefox/29",
    "firefox/30",
    "firefox/31",
    "firefox/32",
    "firefox/33",
    "firefox/34",
    "firefox/35",
    "firefox/36",
    "firefox/37",
    "firefox/38",
    "firefox/39",
    "firefox/40",
    "firefox/41",
    "firefox/42",
    "firefox/43",
    "firefox/44",
    "firefox/45",
    "firefox/46",
    "firefox/47",
    "firefox/48",
    "firefox/49",
    "firefox/50",
    "firefox/51",
    "firefox/52",
    "firefox/53",
    "firefox/54",
    "firefox/55",
    "firefox/56",
    "firefox/57",
    "firefox/58",
    "firefox/59",
];

fn firefox(l: &str) -> bool {
    any(l, &["firefox", "fxios"])
        && (any(
            l,
            &[
                "mobile",
                "fxios",
                "firefox/3.5 maemo",
                "firefox/1.5",
                "firefox/4.",
                "firefox/5.",
                "firefox/6.",
            ],
        ) || any(l, FIREFOX_7_TO_59)
            || (l.contains("firefox/21") && !l.contains("wordpress.com mshots"))
            || (l.contains("firefox/3.") && !any(l, &["camino", "flock", "ggpht.com"]))
            || (l.contains("firefox/2.") && !any(l, &["camino", "wordpress.com mshots"]))
            || !any(l, &["camino", "flock", "ggpht.com", "wordpress.com mshots"]))
}

fn safari(l: &str) -> bool {
    l.contains("safari")
        && (any(l, &["bb10", "silk/", "version/6"])
            || (any(l, &["mobile safari", "mobile/"])
                && !any(
                    l,
                    &[
                        "bot",
                        "preview",
                        "opr/",
                        "coast/",
                        "vivaldi",
                        "cfnetwork",
                        "fxios",
                    ],
                ))
            || (any(l, &["version/11", "version/10", "version/9", "version/8"])
                && !l.contains("bot"))
            || (l.contains("version/7") && !l.contains("bing"))
            || (any(l, &["version/5", "applewebkit/533", "applewebkit/534"])
                && !l.contains("google web preview"))
            || (l.contains("version/4") && !l.contains("googlebot-mobile"))
            || !any(
                l,
                &[
                    "bot",
                    "preview",
                    "opr/",
                    "coast/",
                    "vivaldi",
                    "cfnetwork",
                    "phantom",
                ],
            ))
}

/// WebKit without a Safari token: iOS in-app web views, the PS4, Nintendo consoles.
fn apple_web_kit(l: &str) -> bool {
    l.contains("applewebkit")
        && (any(l, &["itunes", "macappstore", "adobeair"])
            || !any(
                l,
                &["bot", "preview", "opr/", "coast/", "vivaldi", "phantom"],
            ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_names_are_the_librarys() {
        for (i, b) in Browser::ALL.iter().enumerate() {
            assert_eq!(b.code() as usize, i);
            assert_eq!(Browser::from_code(b.code()), Some(*b));
        }
        assert_eq!(Browser::from_code(Browser::COUNT as u8), None);
        let names: std::collections::HashSet<&str> =
            Browser::ALL.iter().map(|b| b.as_str()).collect();
        assert_eq!(names.len(), Browser::COUNT);
    }
}
