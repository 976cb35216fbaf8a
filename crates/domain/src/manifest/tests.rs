use super::*;

const GOOD: &str = r#"
name = "acme/revcomp"
version = "1.0.0"
summary = "Reverse complement of DNA sequences"
description = "README.md"
[[implementation]]
device = "wasm"
artifact = "revcomp.wasm"
[[test]]
input = "tests/1.in"
expect = "tests/1.out"
params = {}
[pricing]
per_call = 0.002
"#;

#[test]
fn parses_the_documented_example() {
    let m = Manifest::parse(GOOD).unwrap();
    assert_eq!(m.name.to_string(), "acme/revcomp");
    assert_eq!(m.version.to_string(), "1.0.0");
    assert_eq!(m.pricing.per_call, Money(2000));
    assert_eq!(m.tests[0].name, "tests/1.in");
    assert_eq!(
        m.referenced_files(),
        vec!["README.md", "revcomp.wasm", "tests/1.in", "tests/1.out"]
    );
}

fn err_field(text: &str) -> String {
    match Manifest::parse(text).unwrap_err() {
        ManifestError::Field { field, .. } => field,
        ManifestError::Syntax(s) => format!("syntax: {s}"),
    }
}

#[test]
fn errors_name_the_field() {
    assert_eq!(err_field(&GOOD.replace("acme/revcomp", "revcomp")), "name");
    assert_eq!(err_field(&GOOD.replace("1.0.0", "one")), "version");
    assert_eq!(
        err_field(&GOOD.replace("per_call = 0.002", "per_call = -1.0")),
        "pricing.per_call"
    );
    assert_eq!(
        err_field(&GOOD.replace("revcomp.wasm", "../x.wasm")),
        "implementation[0].artifact"
    );
    assert_eq!(
        err_field(&GOOD.replace("params = {}", "params = 3")),
        "test[0].params"
    );
    let no_tests = GOOD.split("[[test]]").next().unwrap().to_string() + "[pricing]\nper_call = 1\n";
    assert_eq!(err_field(&no_tests), "test");
    let s = err_field(&GOOD.replace("summary =", "sumary ="));
    assert!(s.contains("sumary"), "{s}");
    let s = err_field(&GOOD.replace("version = \"1.0.0\"\n", ""));
    assert!(s.contains("version"), "{s}");
}

#[test]
fn object_inputs_are_declared_and_given_by_every_test() {
    let with_objects = GOOD.replace(
            "[[test]]",
            "[[object]]\nname = \"index\"\nsummary = \"an index\"\n[[object]]\nname = \"mate\"\nrequired = false\n[[test]]",
        );
    let m = Manifest::parse(&with_objects.replace(
        "params = {}",
        "params = {}\nobjects = { index = \"tests/ref.idx\" }",
    ))
    .unwrap();
    assert_eq!(m.objects.len(), 2);
    assert!(m.objects[0].required && !m.objects[1].required);
    assert_eq!(m.tests[0].objects["index"], "tests/ref.idx");
    assert!(m.referenced_files().contains(&"tests/ref.idx"));
    // A test without the required object.
    assert_eq!(err_field(&with_objects), "test[0].objects");
    // An object nobody declared.
    assert_eq!(
        err_field(&GOOD.replace(
            "params = {}",
            "params = {}\nobjects = { index = \"tests/ref.idx\" }"
        )),
        "test[0].objects.index"
    );
    // A bad name, a duplicate.
    assert_eq!(
        err_field(&with_objects.replace("\"index\"", "\"Index!\"")),
        "object[0].name"
    );
    assert_eq!(
        err_field(&with_objects.replace("\"mate\"", "\"index\"")),
        "object[1].name"
    );
}

#[test]
fn kernel_implementations_declare_their_signature() {
    let opencl = GOOD.replace(
        "[[test]]",
        r#"[[implementation]]
device = "opencl"
artifact = "revcomp.cl"
input_multiple = 4
output = "input"
require = ["width < 100"]
[[implementation.kernel]]
name = "revcomp"
global = ["input / 4"]
local = [64]
args = ["input", "output", "u32 (input / 4)", "u32 width = 60"]
[[test]]"#,
    );
    let m = Manifest::parse(&opencl).unwrap();
    assert!(m.implementations[0].kernel.is_none());
    let k = m.implementations[1].kernel.as_ref().unwrap();
    assert_eq!(k.format, crate::kernel::ProgramFormat::Source);
    assert_eq!(k.kernels[0].args.len(), 4);
    assert_eq!(k.input_multiple, 4);
    // Kernel keys on a wasm implementation, a kernel class without
    // an output size, a bad argument, an undeclared buffer.
    assert_eq!(
        err_field(&GOOD.replace(
            "artifact = \"revcomp.wasm\"",
            "artifact = \"revcomp.wasm\"\noutput = \"input\""
        )),
        "implementation[0].kernel"
    );
    assert_eq!(
        err_field(&opencl.replace("output = \"input\"\n", "")),
        "implementation[1].output"
    );
    let s = err_field(&opencl.replace("\"u32 (input / 4)\"", "\"u8 n\""));
    assert!(s.contains("u8 n"), "{s}");
    assert_eq!(
        err_field(&opencl.replace("\"output\", \"u32", "\"buffer tmp\", \"u32")),
        "implementation[1].kernel[0].args"
    );
    // A vendor binary by its extension.
    let m = Manifest::parse(&opencl.replace("revcomp.cl", "revcomp.xclbin")).unwrap();
    assert_eq!(
        m.implementations[1].kernel.as_ref().unwrap().format,
        crate::kernel::ProgramFormat::Binary
    );
}

#[test]
fn tests_may_compare_floats_within_a_tolerance() {
    let m = Manifest::parse(&GOOD.replace(
        "params = {}",
        "params = {}\ncompare = \"f32\"\ntolerance = 1e-4",
    ))
    .unwrap();
    assert_eq!(
        m.tests[0].compare,
        crate::version::Compare::F32 { tolerance: 1e-4 }
    );
    assert_eq!(
        err_field(&GOOD.replace("params = {}", "params = {}\ncompare = \"f16\"")),
        "test[0].compare"
    );
    assert_eq!(
        err_field(&GOOD.replace("params = {}", "params = {}\ntolerance = 0.1")),
        "test[0].tolerance"
    );
    assert_eq!(
        err_field(&GOOD.replace(
            "params = {}",
            "params = {}\ncompare = \"f64\"\ntolerance = 2.0"
        )),
        "test[0].tolerance"
    );
}

#[test]
fn plans_trials_and_input_pricing() {
    let m = Manifest::parse(&GOOD.replace(
            "per_call = 0.002",
            "per_call = 0.002\nper_gb = 0.05\ntrial_calls = 10\n[[pricing.plan]]\nname = \"pro\"\nmonthly = 49\nincluded_calls = 100000\noverage = 0.0005\n[[pricing.plan]]\nname = \"capped\"\nmonthly = \"5\"\nincluded_calls = 100",
        ))
        .unwrap();
    let t = &m.pricing.terms;
    assert_eq!((t.per_gb, t.trial_calls), (Money(50_000), 10));
    let plans = t.all_plans(m.pricing.per_call);
    assert_eq!(plans.len(), 3);
    assert_eq!(plans[0].name, "per-call");
    assert_eq!(
        plans[2].kind,
        crate::billing::PlanKind::Monthly {
            fee: Money(5_000_000),
            included_calls: 100,
            overage: None
        }
    );
    let hourly = Manifest::parse(&GOOD.replace(
        "per_call = 0.002",
        "per_call = 0.002\n[[pricing.plan]]\nname = \"dedicated\"\nper_device_hour = 2.5",
    ))
    .unwrap();
    assert_eq!(
        hourly.pricing.terms.plans[0].kind,
        crate::billing::PlanKind::DeviceHour {
            per_hour: Money(2_500_000)
        }
    );
    let both = GOOD.replace(
            "per_call = 0.002",
            "per_call = 0.002\n[[pricing.plan]]\nname = \"x\"\nmonthly = 1\nincluded_calls = 1\nper_device_hour = 2",
        );
    assert_eq!(err_field(&both), "pricing.plan[0].monthly");
    let dup = GOOD.replace(
        "per_call = 0.002",
        "per_call = 0.002\n[[pricing.plan]]\nname = \"per-call\"\nmonthly = 1\nincluded_calls = 1",
    );
    assert_eq!(err_field(&dup), "pricing.plan[0].name");
    let neg = GOOD.replace(
        "per_call = 0.002",
        "per_call = 0.002\n[[pricing.plan]]\nname = \"x\"\nmonthly = -1.0\nincluded_calls = 1",
    );
    assert_eq!(err_field(&neg), "pricing.plan[0].monthly");
}

#[test]
fn float_prices_are_exact() {
    for (text, micros) in [
        ("0.1", 100_000),
        ("0.3", 300_000),
        ("2", 2_000_000),
        ("\"0.000001\"", 1),
    ] {
        let m = Manifest::parse(&GOOD.replace("per_call = 0.002", &format!("per_call = {text}")))
            .unwrap();
        assert_eq!(m.pricing.per_call, Money(micros), "{text}");
    }
}

#[test]
fn named_outputs_are_declared_once_each() {
    let with = GOOD.replace(
        "[[test]]",
        "[[output]]\nname = \"vcf\"\nsummary = \"the calls\"\n[[output]]\nname = \"tbi\"\n[[test]]",
    );
    let m = Manifest::parse(&with).unwrap();
    let names: Vec<&str> = m.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["vcf", "tbi"]);
    assert_eq!(m.outputs[0].summary, "the calls");
    assert!(Manifest::parse(GOOD).unwrap().outputs.is_empty());
    assert_eq!(
        err_field(&with.replace("\"tbi\"", "\"vcf\"")),
        "output[1].name"
    );
    assert_eq!(
        err_field(&with.replace("\"tbi\"", "\"../x\"")),
        "output[1].name"
    );
    let many: String = (0..=crate::MAX_OUTPUTS)
        .map(|i| format!("[[output]]\nname = \"o{i}\"\n"))
        .collect();
    assert_eq!(
        err_field(&GOOD.replace("[[test]]", &format!("{many}[[test]]"))),
        "output"
    );
}
