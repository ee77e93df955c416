//! The operating system of a User-Agent, at the level enforcer reports it (`device` in
//! `api_metrics`, the Device Types pane): user-agent-utils 1.21's `OperatingSystem`
//! constant when it is a Windows one (`WINDOWS_10`, `WINDOWS_7`, `WINDOWS_XP`, …), its
//! top-level group otherwise (`MAC_OS_X`, `IOS`, `ANDROID`, `LINUX`, `CHROME_OS`, …).
//!
//! Why that level: the library's most specific constant (`OperatingSystem.name()`, which
//! ABS's samples show, e.g. `UBUNTU`) is frozen at 2018 for phones: every iPhone since iOS
//! 12 is `MAC_OS_X_IPHONE`, every Android 10 and later `ANDROID1`, Android 9 phones
//! `ANDROID_MOBILE`. Its groups alone lose the Windows versions that ABS's reports show
//! (`WINDOWS_7`, `WINDOWS_XP`). Leaf for Windows, group for the rest is the one level that
//! gives the names ABS's documentation shows for ordinary traffic (`WINDOWS_10`,
//! `WINDOWS_7`, `WINDOWS_XP`, `MAC_OS_X`, `IOS`, `ANDROID`, `LINUX`). It departs from ABS
//! where ABS would print a non-Windows leaf: `UBUNTU` is `LINUX`, `MAC_OS_X_IPHONE` is
//! `IOS`, `ANDROID8` is `ANDROID`.
//!
//! The tree below is the library's, walked the way it walks it: lower-case substring
//! tests, top-level constants in declaration order, and a constant's children tried before
//! its exclusions are checked (so a child can override them).

use super::browser::any;

/// An operating system as enforcer reports it: an index into [`Os::NAMES`]. The index is
/// the stored code: never reorder the names, only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Os(u8);

impl Os {
    /// Every name enforcer reports, in code order.
    pub const NAMES: [&'static str; 42] = [
        "UNKNOWN",
        "WINDOWS",
        "WINDOWS_10",
        "WINDOWS_81",
        "WINDOWS_8",
        "WINDOWS_7",
        "WINDOWS_VISTA",
        "WINDOWS_2000",
        "WINDOWS_XP",
        "WINDOWS_10_MOBILE",
        "WINDOWS_PHONE8_1",
        "WINDOWS_PHONE8",
        "WINDOWS_MOBILE7",
        "WINDOWS_MOBILE",
        "WINDOWS_98",
        "XBOX_OS",
        "ANDROID",
        "CHROME_OS",
        "WEBOS",
        "PALM",
        "MEEGO",
        "IOS",
        "MAC_OS_X",
        "MAC_OS",
        "MAEMO",
        "BADA",
        "GOOGLE_TV",
        "TIZEN",
        "KINDLE",
        "LINUX",
        "SYMBIAN",
        "SERIES40",
        "SONY_ERICSSON",
        "SUN_OS",
        "PSP",
        "WII",
        "BLACKBERRY",
        "BLACKBERRY_TABLET",
        "ROKU",
        "PROXY",
        "UNKNOWN_MOBILE",
        "UNKNOWN_TABLET",
    ];
    pub const COUNT: usize = Os::NAMES.len();
    pub const UNKNOWN: Os = Os(0);

    /// Every value, in code order.
    pub fn all() -> impl Iterator<Item = Os> {
        (0..Os::COUNT as u8).map(Os)
    }

    pub fn as_str(self) -> &'static str {
        Os::NAMES.get(self.index()).copied().unwrap_or("UNKNOWN")
    }

    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    pub fn code(self) -> u8 {
        self.0
    }

    pub fn from_code(code: u8) -> Option<Os> {
        (usize::from(code) < Os::COUNT).then_some(Os(code))
    }

    /// The value of a reported name (`"IOS"`).
    pub fn named(name: &str) -> Option<Os> {
        Os::NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| u8::try_from(i).ok())
            .map(Os)
    }

    /// The reported OS of a lower-cased User-Agent.
    pub fn of_lowercase(l: &str) -> Os {
        Os::reporting(leaf(l))
    }

    /// The reported level of one of the library's constants: the constant itself under
    /// WINDOWS, its top-level group otherwise.
    pub(super) fn reporting(constant: &str) -> Os {
        let group = group_of(constant);
        let name = if group == "WINDOWS" { constant } else { group };
        Os::named(name).unwrap_or(Os::UNKNOWN)
    }
}

/// One of the library's `OperatingSystem` constants.
struct Constant {
    name: &'static str,
    /// `""` for a top-level constant (a group).
    parent: &'static str,
    aliases: &'static [&'static str],
    excludes: &'static [&'static str],
}

const fn c(
    name: &'static str,
    parent: &'static str,
    aliases: &'static [&'static str],
    excludes: &'static [&'static str],
) -> Constant {
    Constant {
        name,
        parent,
        aliases,
        excludes,
    }
}

/// The most specific constant the library gives a lower-cased agent
/// (`OperatingSystem.parseUserAgentLowercaseString(l).name()`).
pub(super) fn leaf(l: &str) -> &'static str {
    TREE.iter()
        .filter(|k| k.parent.is_empty())
        .find_map(|k| matching(k, l))
        .map_or("UNKNOWN", |k| k.name)
}

/// `k` or its most specific matching descendant, if `k`'s aliases occur and it is not
/// excluded (a matching child is returned before `k`'s exclusions are looked at).
fn matching<'t>(k: &'t Constant, l: &str) -> Option<&'t Constant> {
    if !any(l, k.aliases) {
        return None;
    }
    if let Some(child) = TREE
        .iter()
        .filter(|child| child.parent == k.name)
        .find_map(|child| matching(child, l))
    {
        return Some(child);
    }
    (!any(l, k.excludes)).then_some(k)
}

/// The top-level constant above `name` (`getGroup()`).
fn group_of(name: &str) -> &'static str {
    let mut at = TREE.iter().find(|k| k.name == name);
    while let Some(k) = at {
        if k.parent.is_empty() {
            return k.name;
        }
        at = TREE.iter().find(|p| p.name == k.parent);
    }
    "UNKNOWN"
}

/// user-agent-utils 1.21's `OperatingSystem` enum (eu.bitwalker.useragentutils, Copyright
/// (c) 2008-2018 Harald Walker and contributors, BSD-3-Clause), read from the library's jar
/// by reflection: name, parent, lower-case aliases, exclusions, in declaration order.
const TREE: &[Constant] = &[
    c("WINDOWS", "", &["windows"], &["palm", "ggpht.com"]),
    c(
        "WINDOWS_10",
        "WINDOWS",
        &["windows nt 6.4", "windows nt 10"],
        &[],
    ),
    c("WINDOWS_81", "WINDOWS", &["windows nt 6.3"], &[]),
    c(
        "WINDOWS_8",
        "WINDOWS",
        &["windows nt 6.2"],
        &["xbox", "xbox one"],
    ),
    c(
        "WINDOWS_7",
        "WINDOWS",
        &["windows nt 6.1"],
        &["xbox", "xbox one"],
    ),
    c(
        "WINDOWS_VISTA",
        "WINDOWS",
        &["windows nt 6"],
        &["xbox", "xbox one"],
    ),
    c("WINDOWS_2000", "WINDOWS", &["windows nt 5.0"], &[]),
    c("WINDOWS_XP", "WINDOWS", &["windows nt 5"], &["ggpht.com"]),
    c("WINDOWS_10_MOBILE", "WINDOWS", &["windows phone 10"], &[]),
    c("WINDOWS_PHONE8_1", "WINDOWS", &["windows phone 8.1"], &[]),
    c("WINDOWS_PHONE8", "WINDOWS", &["windows phone 8"], &[]),
    c("WINDOWS_MOBILE7", "WINDOWS", &["windows phone os 7"], &[]),
    c("WINDOWS_MOBILE", "WINDOWS", &["windows ce"], &[]),
    c("WINDOWS_98", "WINDOWS", &["windows 98", "win98"], &["palm"]),
    c("XBOX_OS", "WINDOWS", &["xbox"], &[]),
    c("ANDROID", "", &["android"], &["ubuntu"]),
    c(
        "ANDROID8",
        "ANDROID",
        &["android 8", "android-8"],
        &["glass"],
    ),
    c(
        "ANDROID8_TABLET",
        "ANDROID8",
        &["android 8", "android-8"],
        &["mobile", "glass"],
    ),
    c(
        "ANDROID7",
        "ANDROID",
        &["android 7", "android-7"],
        &["glass"],
    ),
    c(
        "ANDROID7_TABLET",
        "ANDROID7",
        &["android 7", "android-7"],
        &["mobile", "glass"],
    ),
    c(
        "ANDROID6",
        "ANDROID",
        &["android 6", "android-6"],
        &["glass"],
    ),
    c(
        "ANDROID6_TABLET",
        "ANDROID6",
        &["android 6", "android-6"],
        &["mobile", "glass"],
    ),
    c(
        "ANDROID5",
        "ANDROID",
        &["android 5", "android-5"],
        &["glass"],
    ),
    c(
        "ANDROID5_TABLET",
        "ANDROID5",
        &["android 5", "android-5"],
        &["mobile", "glass"],
    ),
    c(
        "ANDROID4",
        "ANDROID",
        &["android 4", "android-4"],
        &["glass", "ubuntu"],
    ),
    c(
        "ANDROID4_TABLET",
        "ANDROID4",
        &["android 4", "android-4"],
        &["mobile", "glass", "ubuntu"],
    ),
    c("ANDROID4_WEARABLE", "ANDROID", &["android 4"], &["ubuntu"]),
    c("ANDROID3_TABLET", "ANDROID", &["android 3"], &[]),
    c("ANDROID2", "ANDROID", &["android 2"], &[]),
    c(
        "ANDROID2_TABLET",
        "ANDROID2",
        &["kindle fire", "gt-p1000", "sch-i800"],
        &[],
    ),
    c("ANDROID1", "ANDROID", &["android 1"], &[]),
    c("ANDROID_MOBILE", "ANDROID", &["mobile"], &["ubuntu"]),
    c("ANDROID_TABLET", "ANDROID", &["tablet"], &[]),
    c("CHROME_OS", "", &["cros"], &[]),
    c("WEBOS", "", &["webos"], &[]),
    c("PALM", "", &["palm"], &[]),
    c("MEEGO", "", &["meego"], &[]),
    c("IOS", "", &["iphone", "like mac os x"], &[]),
    c("iOS11_IPHONE", "IOS", &["iphone os 11"], &[]),
    c("iOS10_IPHONE", "IOS", &["iphone os 10"], &[]),
    c("iOS9_IPHONE", "IOS", &["iphone os 9"], &[]),
    c("iOS8_4_IPHONE", "IOS", &["iphone os 8_4"], &[]),
    c("iOS8_3_IPHONE", "IOS", &["iphone os 8_3"], &[]),
    c("iOS8_2_IPHONE", "IOS", &["iphone os 8_2"], &[]),
    c("iOS8_1_IPHONE", "IOS", &["iphone os 8_1"], &[]),
    c("iOS8_IPHONE", "IOS", &["iphone os 8"], &[]),
    c("iOS7_IPHONE", "IOS", &["iphone os 7"], &[]),
    c("iOS6_IPHONE", "IOS", &["iphone os 6"], &[]),
    c("iOS5_IPHONE", "IOS", &["iphone os 5"], &[]),
    c("iOS4_IPHONE", "IOS", &["iphone os 4"], &[]),
    c("MAC_OS_X_IPAD", "IOS", &["ipad"], &[]),
    c("iOS11_IPAD", "MAC_OS_X_IPAD", &["os 11"], &[]),
    c("iOS10_IPAD", "MAC_OS_X_IPAD", &["os 10"], &[]),
    c("iOS9_IPAD", "MAC_OS_X_IPAD", &["os 9"], &[]),
    c("iOS8_4_IPAD", "MAC_OS_X_IPAD", &["os 8_4"], &[]),
    c("iOS8_3_IPAD", "MAC_OS_X_IPAD", &["os 8_3"], &[]),
    c("iOS8_2_IPAD", "MAC_OS_X_IPAD", &["os 8_2"], &[]),
    c("iOS8_1_IPAD", "MAC_OS_X_IPAD", &["os 8_1"], &[]),
    c("iOS8_IPAD", "MAC_OS_X_IPAD", &["os 8_0"], &[]),
    c("iOS7_IPAD", "MAC_OS_X_IPAD", &["os 7"], &[]),
    c("iOS6_IPAD", "MAC_OS_X_IPAD", &["os 6"], &[]),
    c("MAC_OS_X_IPHONE", "IOS", &["iphone"], &[]),
    c("MAC_OS_X_IPOD", "IOS", &["ipod"], &[]),
    c("MAC_OS_X", "", &["mac os x", "cfnetwork"], &[]),
    c("MAC_OS", "", &["mac"], &[]),
    c("MAEMO", "", &["maemo"], &[]),
    c("BADA", "", &["bada"], &[]),
    c("GOOGLE_TV", "", &["googletv"], &[]),
    c("TIZEN", "", &["tizen"], &[]),
    c("TIZEN3", "TIZEN", &["tizen 3."], &[]),
    c("TIZEN3_MOBILE", "TIZEN3", &["mobile"], &[]),
    c("TIZEN3_TV", "TIZEN3", &["smart-tv", " tv "], &[]),
    c("TIZEN2", "TIZEN", &["tizen 2."], &[]),
    c("TIZEN2_MOBILE", "TIZEN2", &["mobile"], &[]),
    c("TIZEN2_TV", "TIZEN2", &["smart-tv", " tv "], &[]),
    c("TIZEN_MOBILE", "TIZEN", &["mobile"], &[]),
    c("KINDLE", "", &["kindle"], &[]),
    c("KINDLE3", "KINDLE", &["kindle/3"], &[]),
    c("KINDLE2", "KINDLE", &["kindle/2"], &[]),
    c("LINUX", "", &["linux", "camelhttpstream"], &[]),
    c("UBUNTU", "LINUX", &["ubuntu"], &[]),
    c("UBUNTU_TOUCH_MOBILE", "UBUNTU", &["mobile"], &[]),
    c("LINUX_SMART_TV", "LINUX", &["smarttv"], &[]),
    c("SYMBIAN", "", &["symbian", "series60"], &[]),
    c("SYMBIAN9", "SYMBIAN", &["symbianos/9", "series60/3"], &[]),
    c(
        "SYMBIAN8",
        "SYMBIAN",
        &["symbianos/8", "series60/2.6", "series60/2.8"],
        &[],
    ),
    c("SYMBIAN7", "SYMBIAN", &["symbianos/7"], &[]),
    c("SYMBIAN6", "SYMBIAN", &["symbianos/6"], &[]),
    c("SERIES40", "", &["nokia6300"], &[]),
    c("SONY_ERICSSON", "", &["sonyericsson"], &[]),
    c("SUN_OS", "", &["sunos"], &[]),
    c("PSP", "", &["playstation"], &[]),
    c("WII", "", &["wii"], &[]),
    c("BLACKBERRY", "", &["blackberry"], &[]),
    c("BLACKBERRY7", "BLACKBERRY", &["version/7"], &[]),
    c("BLACKBERRY6", "BLACKBERRY", &["version/6"], &[]),
    c("BLACKBERRY_TABLET", "", &["rim tablet os"], &[]),
    c("ROKU", "", &["roku"], &[]),
    c("PROXY", "", &["ggpht.com"], &[]),
    c("UNKNOWN_MOBILE", "", &["mobile"], &[]),
    c("UNKNOWN_TABLET", "", &["tablet"], &[]),
    c("UNKNOWN", "", &[], &[]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reported_name_is_a_windows_constant_or_a_group() {
        for name in Os::NAMES {
            let k = TREE.iter().find(|k| k.name == name).unwrap();
            assert!(
                k.parent.is_empty() || k.parent == "WINDOWS",
                "{name} is neither"
            );
            assert_eq!(Os::reporting(name).as_str(), name);
        }
        // And every constant of the tree reports as one of them.
        for k in TREE {
            assert_ne!(Os::named(Os::reporting(k.name).as_str()), None);
        }
        assert!(Os::all().all(|o| Os::from_code(o.code()) == Some(o)));
        assert_eq!(Os::from_code(Os::COUNT as u8), None);
    }

    #[test]
    fn leaves_report_at_their_level() {
        for (leaf, reported) in [
            ("UBUNTU", "LINUX"),
            ("MAC_OS_X_IPHONE", "IOS"),
            ("iOS11_IPAD", "IOS"),
            ("ANDROID8_TABLET", "ANDROID"),
            ("WINDOWS_7", "WINDOWS_7"),
            ("XBOX_OS", "XBOX_OS"),
            ("BLACKBERRY7", "BLACKBERRY"),
        ] {
            assert_eq!(Os::reporting(leaf).as_str(), reported);
        }
    }
}
