//! The fuzz target's logic (`fuzz/fuzz_targets/logic.rs`) on stable Rust: random inputs fed
//! to the same checks as `cargo fuzz run stream` (streamed output equals whole-buffer output;
//! no run of 12 bytes of a secret survives raw, base64, hex, percent or JSON decoding).
//!
//! By default a few hundred inputs, as part of the test suite. For a long run, set
//! `SEALRUN_FUZZ_SECS` (e.g. 600 for ten minutes; `SEALRUN_FUZZ_SEED` to vary the inputs):
//!
//! ```sh
//! SEALRUN_FUZZ_SECS=600 cargo test --release -p sealrun-redactor --test suite fuzz_stable -- --nocapture
//! ```
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

#[path = "../fuzz/fuzz_targets/logic.rs"]
mod logic;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// A case a long run once failed on, kept as it was generated (secrets, printed text and
/// chunk sizes, hex), so that it stays the same case whatever the generator becomes.
struct Found {
    what: &'static str,
    secrets: &'static [&'static str],
    text: &'static str,
    chunks: &'static [usize],
}

const FOUND: &[Found] = &[
    Found {
        what: "a comma-separated run after a lone hex digit and a space (`YC ,C8,C1`): the digit is dropped first, then the separator, whether a stream's held-back bytes begin before them or after (found by seed 77031 against the second form of that case's fix, which left the separator out before dropping the digit)",
        secrets: &[
            "4846d1ed7fc41f108be3f76ecc0f02fe24",
            "9857dab2c0acc8c10b53f1e2f091a808a177b928cbe871e3efcd12c6",
        ],
        text: concat!(
            "ad209cb35584b9014b3b9cb95657e8ff7c0b5b9a273766633431663130386265336637366563633066303266",
            "657c525cc4099f4be087db56b1d4dd30b772c51ac8c15c753030306253f1e2f091a85c7530303038a177b928",
            "cbe49d49981a3c999023cb51c2130b53f1e2f091a808a177b9287fc45c75303031665c75303031308be3f76e",
            "cc5c75303030665c7530303032fe24904107ea037c65c679cb6086a808a177b928cbe871e3efcd12fb374837",
            "7c16a3d0e48ab97867a81382ea215c7862325c7863305c7861635c7863385c7863315c7830625c7835335c78",
            "66315c7865325c7866305c7839315c7861385c78303812aef091a808a177b928cbe871e3efc74ddeef85435d",
            "15767a988bc7c7d4e5d6e65943202c43382c43312c30422c35332c46312c45322c46302c39312c41382c3038",
            "2c41312c37372c42392c32382c43420a2045382c37317260e7aaadcc985e01bf82bf908bbd468af395d839ff",
            "3533463145324630393141383038413137374239323843424538373145334546434431327527b48d094f358b",
            "9eccd1566271f747f1e2f091a808a177b928cbe871e3ef3beb241b1dbbbeb079c7a496f4411bc45c75303031",
            "665c75303031308be3f76ecc5c75303030665c7530303032fe24",
        ),
        chunks: &[168, 118, 134, 24, 5, 17],
    },
    Found {
        what: "contiguous hex wrapped just before separated hex (`...E92\\nB9a2 0b 70`): the separated run's `a2` is its bytes, not part of an offset column `B9a2 `, although extending rightwards from the line before reads it so (found by seed 77031 against the first form of that case's fix: the layout reading lost a byte of the run)",
        secrets: &["8e41fffc8a85a20b70689e92b97ce263b28f"],
        text: concat!(
            "b0f5ce2824fc8a85a20b70689e92b97ce2bec8996d6d02f7f4f3910fb80249d8ea303a0b85a20b70689e92b9",
            "7ce263b28fd27674e53c3e6570586ccb8ad79b02e93425464325384125383525413225304270682539452539",
            "322542392537432545326a04a6330418575e8c9fa8245c7861325c7830625c7837305c7836385c7839655c78",
            "39325c7862395c7837635c7865325c7836335c7862325c78386681802e7e767739ddf0fd30693d8d35414e69",
            "466f677477614a365375587a69593749aa610b7fd6c15cf809f47e8bd8771b5f64daa16ed234314646464338",
            "4138354132304237303638394539320a42396132203062203730203638203965203932206239203763206532",
            "203633206232203866c505b26b94711cbb47a87c5c7866635c7838615c7838355c7861325c7830625c783730",
            "5c7836385c7839655c7839325c7862395c7837635c7865325c7836335c7862325c7838661b111173e8bf01e5",
            "ef96d7daa2af31fbc0243d6866794b68610a494c634769650a6b726c38346d0a4d",
        ),
        chunks: &[114, 29, 1, 146, 95],
    },
    Found {
        what: "an `od`-style dump split over lines (`df 0a\\n 44 01`), a push ending after it: re-extended from the next line, leftwards, its indentation was read as the form's separator and masked, where the whole buffer (extending rightwards) left it visible; a line's leading layout is now read alike both ways",
        secrets: &[
            "95f00759e9a30413488f1ff26d93db26a26203530d49e9016826c469df4210ec744d16193a",
            "6ed96ed73147c4abdf0a4401e0d8b0c277c88c8599",
        ],
        text: concat!(
            "e8085b9cd75c7249e95c75303030316826c469df425c7530303130ec744d5c75303031365c75303031393a2c",
            "15986a7a0b36652064392036652064372033312034372063342061622064662030610a203434203031206530",
            "206438206230206332203737206338203863203835ff642caad0c98da80f156112ff44392036452044372033",
            "312034372043342041422044462030410a203434203031204530204438204230204332203737204338203843",
            "0a2038352596cd7fa7c4abdf5c6e445c7530303031e0d8b0c277c88c8599cb6e08c46e88c6a78e3b9ae3eb5f",
            "abccadb83092fc813147c4abdf5c6e445c7530303031e0d8b0c277c88c85d6b4899f6df721f1923ccfc52b9e",
            "6ed73147c4abdf0a4401e0d8b0c24c17e8f29b3f1523d3d122811fc4dbc4cd4e45594b52414867324c444364",
            "38694d685a6b41075ed5fd5897424d41eae08e2271e380ecb5e95c75303030316826c469df425c7530303130",
            "ec744d5c75303031365c75303031393a8382e5c527a1d05eabbe137fb9ed8b47254334254142254446253041",
            "44253031254530254438254230254332772543385c7864395c7836655c7864375c7833315c7834375c786334",
            "5c7861625c7864665c7830615c7834345c7830315c7865305c786438",
        ),
        chunks: &[123, 61, 145, 83, 20, 35, 1],
    },
    Found {
        what: "wrapped hex cut within a byte whose last line runs on into other hex and a `:`: the digits that spell the form's next characters in part are its last bytes, not a dump's offset column",
        secrets: &[
            "2be6d659d653c618795c8c98f23211aaa97924b733f310d47792cc0dab33a2991c2eb574e7750698bfea7c9fa3f520c6ef291b6f",
        ],
        text: concat!(
            "ba31382c37392c35432c38432c39382c46322c33322c31312c41412c41392c37390a2032342c42372c33332c",
            "46332c31302c44342c37372c39322c43432c30442c41420a2033332c41322c39392c31432c32452c42352c37",
            "342c45372c373557e91522faa97924b733f35c7530303130d47792cc5c72ab33a2a8f52d3119be48c156fbb7",
            "ef9016d47792cc5c72ab33a2995c75303031632eb574e7755c753030303698bfea7c9fa3f520c6efd0d0a6b3",
            "b4d192f4f700393938424645413743394641334635323043364546320a39314237373a39323a43433a30443a",
            "41423a33333a41323a39390a2031433a32453a42353a37343a45373a37353a30363a39380a2042463a45413a",
            "37433a39463a41333a4635",
        ),
        chunks: &[33, 227, 15],
    },
    Found {
        what: "wrapped hex whose next line's digits run on past the secret's end into `:`: they are the secret's last bytes, not a dump's offset column",
        secrets: &[
            "ba574050cd52bd47b2da0152740ff0222998f1013cfcb9167e27648c1e2bc88edb9294842e3eb5a2b448eabb45ea32e18921399da3b73bfc3d",
            "62af590e35daaa40c4a918e28184d975539dafe0a6",
        ],
        text: concat!(
            "b58033353a64613a61613a34303a63343a61393a31383a65323a38313a38343a64393a37353a35333a39643a",
            "616681a1bee99230653a33353a64613a61613a34303a63343a61393a31383a65323a38313a38343a6439d325",
            "30312533432546432542392531367e2532376425384325314525324225433825384525444225393225393425",
            "38342e2533452542352541322542344825454125424245254541322545312538392532313925394425413325",
            "42372533422546432533440efc64c64de5b910831c3971886d61393138653238313834643937353533390a64",
            "61666530613638653a64623a39323a39343a38343a32653a33653a62353a61323a62343a34383a65613a6262",
            "3a34353a65613a33323a65313a38393a32313a33393a3964444bfb7924b536dc1ddb4a44a1b2803f76f6ef34",
            "373a62323a64613a30313a35323a37343a30663a66303a32320a2032393a39383a66313a30313a33633a6663",
            "3a62393a31363a37650a2032373a36343a38633a31653a32623a63383a38653a64623a39320a2039343a3834",
            "3a32653a33653a62353a61323a62343a3438db333544414141343043344139310a3845323831383444393735",
            "fdd0547b530a321d93f7157e4441303135323734304646303232323939384631303133434643423931363745",
            "3237363438433145324243383845444239323934383432453345f714ee967f7e19cacbb1ab0c795c7861395c",
            "7831385c7865325c7838315c7838345c7864395c7837355c7835335c7839645c7861665c7865305c7861364c",
            "25be47da258186f2e0bb25304535254441254141253430254334254139253138254532253831253834254439",
            "75",
        ),
        chunks: &[60, 284, 70, 165, 38],
    },
    Found {
        what: "wrapped hex whose last line is followed by `:` and a digit the form has next: the digits are the secret's bytes, not a dump's offset column",
        secrets: &[
            "fcd84eda15a170f2adcee3b4a229cafe9ac2b4bd7b0cd4fdd3",
            "93b717f1ededc49e1925c115e948ed7754fa92bf7013b240682027e0def58677b75160e558fb22137f42f9e5a4b3626eb824757355",
        ],
        text: concat!(
            "864544433439453139323543313135453934380a4544373735343a65e9dda5f72ba266326164636565336234",
            "613232396361666539616332623462643762741be0c197660a1f084afe6d644b2edfd460e558fb5c225c7530",
            "3031337f42f9e5a4b3626eb82475735564e3cb089ad25af1741a3f311a70a2b6c8cac767d6c9292546422532",
            "3225313325374642254639254535254134254233626e254238253234757355ca3870483ee07eabe968e0ffa7",
            "d8458d45da023a4ce49d6c664874376353654753584246656c49375864552b704b2f63424f79514767674a2b",
            "446539595a337431466735566a3749684d5096dc01ac20fc2c606a2240f98afc9b2fe9b5bdf132da5c753030",
            "3135a170f2adcee3b4a229ca86d53b3161601ed65df6dd28e5d2d2b4d2f64087702546322541442543452545",
            "33254234254132253239254341254645253941254332254234254244",
        ),
        chunks: &[160, 176],
    },
    Found {
        what: "hex in mixed case (a filler's `E` before lower-case hex): holding back knows every mix of cases",
        secrets: &[
            "1a8c539b8a2bfc65b7d76ad9e7f3bd7e2b35328f4601504b521227a65baa8c957b2025d8ca4275e48f505deb465b8dc92b",
            "bb3109cb07eadc21b094d3aa43343a3c48911bfecb31f5a272163d12ea1c502bb4bff10541452f5ceefe6398b2403521267e409dd3424a224f5469e2b45b2f",
        ],
        text: concat!(
            "cd1fc227784b521227a65baa8c957b2025d8ca4275e48f505deb467e253430253944254433424a2532324f54",
            "692545322542342535425179dd4dcf6659451c47aaa03832b5864a751a8dc05b7f4b5f786c74396471326566",
            "7a765834724e544b5052674651533149534a365a62716f79566579416c324d704364650a5190e524b226b84b",
            "c1b8d247bc464336354237443736414439453746334244374532423335333238463436303135303442353231",
            "3232374136354241413843393537423230323544384341340a3237354534384635303544fc2d365907ada784",
            "f4f41f742e6d22806969e7b7e31bae253430253944254433424a2532324f5469254532254234253542e5168d",
            "d348a4d1599b30cda57043dfc172e3594356453262333533323866343630310a353034623532313232376136",
            "0a35626161386339351a8c539b8a2bfc65b7d76ad9",
        ),
        chunks: &[
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        ],
    },
    Found {
        what: "base64 in both alphabets at once: holding back knows every mix extension accepts",
        secrets: &[
            "a7026b49ed7dcffc3938842ba5c9c502204ac6d3a12809e33ec5d459a2da2b6063571de806b3fd3be9181a",
            "b4911bd7b64d0dbe7ab3f770d6db8ea4f51700368897ab1c438770dbfefd00a704ffc81be3a5696b90cf237790462bd7d35c18d7",
            "d9ff2bd8b441978e5da378cb3d51a8729d9273c8105fb0eccebd1621b725485c0dc0b448d4fde14edadf3128048f00ef7ca542ffe098baa0",
        ],
        text: concat!(
            "b1aa81c9d4d1490847b1934bb57fe92b5f51436e42505f49472d4f6c610d0a5775517a794e336b4559723177",
            "0d0a3d3d705dd8350e98da8c8e9e75df17997a34396564376463666663333933383834326261356339633530",
            "323230346163366433613132383039653333656335643435396132c58ac7bd6ee72030785dd4529c1304aed3",
            "b4e548d4fde14edadf3128048f00a7026b49ed7dcffc3938842ba7026b49ed7dcffc3938842b",
        ),
        chunks: &[
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        ],
    },
    Found {
        what: "a lone hex digit, then a space, before hex: it spells no whole byte, so no piece begins with it",
        secrets: &[
            "8a2b049e9a036fc57c63439949afc335da8a642bc009f9965543cbb7c8dde73c49968019d3e7cb0fe8326d6dca049f9e11c5f3fcc8761a53c9e7c87fe1",
            "26339ee79c924ea1c2a0f131c01ceafe90b256219eae01986da234de420bfeae",
        ],
        text: concat!(
            "5cd338addb765f065a070f272e25614520313143354633464343383736314135334339453743383746ff5bf7",
            "6227fb8c7bbebe73a6d216fbfc36112f1a7bf2f8312543302531432545412546452539302542325625323125",
            "3945254145253031253938386f2e14321e8f472e90232e5cea38326f706b4b38414a2d5a5a5651387533794e",
            "336e50456d5767426e543538735036444a0d0a7462636f456e35345236fb4ba4ede2daa4b996aeaddf5e6e9d",
            "8cbbf08a2b5c75303030349e9a5c75303030336fc57c63439949afc335da8a642bc05c74f9965543cbb7c8dd",
            "e73c4996805c7530303139d3b59a5b4cc3219eae01986da234de420bfe31624d9f38dceccd12025ffe90b256",
            "219eae01986da234de420bfeae07aced283056030d3439616663333335646138610a36343262633030396639",
            "39360a3535343363626237633864640a6537336334393936383031390a6433653763623066653833320a3664",
            "366463613034396639650a3131633566336663633837360a3161353363396537633837660a6531c6c75e1b16",
            "73f131c05c7530303163eafe90b256219eae5c7530303031986da234de425c7530303062f2af7475da732878",
            "2bb74b253936253830253139254433254537254342253046254538326d6d2543412530342539462539452531",
            "312543352546332546437a8539ba9954fc61fdfcbe1da28026eb11bb73f92543322541302546313125433025",
            "314325454125464525393025423256253231",
        ),
        chunks: &[23, 6, 103, 39, 14, 68, 260, 33],
    },
    Found {
        what: "a separator, then a space, before separated hex: every seed of the piece drops it alike (extension judged the first segment before it had gone right)",
        secrets: &[
            "a8b1308309fe4e22be5e1f077fe9c5cae735a91149",
            "37450ca159b54d6067257ff80f41",
            "9181d9d9dd3fcbbe772cdeedeb436bf7f47aa844e4b01da69da9cfb0ef4b4acf4cd854b89938cf2ffd",
            "2c1a94192f8db67b690a70d104ba193f22d1542129c7e9",
        ],
        text: concat!(
            "43ccca70c745011134b1b67b690a70d104ba193f22d1db9bf8fea53b0cadab60f578e15c35717dc3aaa24b70",
            "9ffe4e5c22be5e5c75303031665c75303030377fe9c5cae735a94de46b8ef66d33716f524f53774861616471",
            "632d773730744b7a307a59564c695a7297ad76c30270548a870fa55b2934623461636634636438353462380a",
            "393933386366326666646ff63119423620374220363920304120373020443120303420424120313920334620",
            "32322044312035342032312032396ecabb5d4f306689d30c987b690a70d104ba193f22d1542129c733302038",
            "332030392046452034452032322042452035452031462030372037462045395238e22e333639304137304431",
            "3034424131393346323244313534323132398e34333642463746343741413834344534423031444136394441",
            "394346423045463442344143463443443835344238393933380053f43a2030633a61313a35393a62353a3464",
            "3a36303a36373a32353a37663a66383a30663a3431e95ae3a95c7862305c7865665c7834625c7834615c7863",
            "665c7834635c7864385c7835345c7862385c7839395c7833385c7863665c7832665c786664",
        ),
        chunks: &[20, 290, 34, 89],
    },
];

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn the_fuzz_targets_checks_hold_for_the_cases_found_before() {
    for found in FOUND {
        let secrets: Vec<Vec<u8>> = found.secrets.iter().map(|s| unhex(s)).collect();
        let text = unhex(found.text);
        assert_eq!(
            found.chunks.iter().sum::<usize>(),
            text.len(),
            "{}",
            found.what
        );
        assert!(
            std::panic::catch_unwind(|| logic::check(&secrets, &text, found.chunks)).is_ok(),
            "{}",
            found.what
        );
    }
}

#[test]
fn the_fuzz_targets_checks_hold_for_random_inputs() {
    let budget = env_u64("SEALRUN_FUZZ_SECS").map(Duration::from_secs);
    let mut x = env_u64("SEALRUN_FUZZ_SEED").unwrap_or(0x5EA1_F022) | 1;
    let started = Instant::now();
    let mut cases = 0u64;
    loop {
        let done = match budget {
            Some(budget) => started.elapsed() >= budget,
            None => cases >= 300,
        };
        if done {
            break;
        }
        let mut next = || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let len = 64 + (next() % 2048) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if std::panic::catch_unwind(|| logic::run(&data)).is_err() {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            panic!("case {cases} failed; its input (hex): {hex}");
        }
        cases += 1;
    }
    eprintln!("fuzz logic: {cases} inputs in {:.1?}", started.elapsed());
}
