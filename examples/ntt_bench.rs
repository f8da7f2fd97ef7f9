//! NTT benchmark: our negacyclic NTT (src/pir/ntt.rs) on its AVX2 and portable backends
//! against `fhe_math::ntt::NttOperator` in the same run, at Respire's and MulPIR's (q, n).
//! Run through `tools/bench/ntt.sh`, which documents what is measured.
//!
//! Usage: ntt_bench [--samples N] [--sample-ms MS]

use std::hint::black_box;
use std::time::Duration;

use fhe_math::ntt::NttOperator;
use fhe_math::zq::Modulus;
use mimi_discovery::pir::ntt::{Backend, NttPlan};
use mimi_discovery::sys::thread_cpu_time;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Respire's rings (d = 512 with q2, d = 2048 with both halves of q1) and MulPIR's moduli at
/// its ring size 4096.
const CASES: [(usize, u64, &str); 7] = [
    (512, 16760833, "Respire q2"),
    (2048, 268369921, "Respire q1a"),
    (2048, 249561089, "Respire q1b"),
    (4096, 268369921, "MulPIR q0"),
    (4096, 134176769, "MulPIR q1"),
    (4096, 134111233, "MulPIR q2"),
    (4096, 134012929, "MulPIR q3"),
];

struct Args {
    samples: usize,
    sample: Duration,
}

fn parse_args() -> Args {
    let mut a = Args {
        samples: 9,
        sample: Duration::from_millis(30),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--samples" => a.samples = value.parse().unwrap_or(9).max(1),
            "--sample-ms" => a.sample = Duration::from_millis(value.parse().unwrap_or(30)),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    a
}

/// Median thread CPU time of one call, in ns: calls are timed in batches of about
/// `args.sample` each, `args.samples` batches.
fn time_ns(args: &Args, mut op: impl FnMut()) -> f64 {
    op();
    let mut batch = 1u32;
    loop {
        let start = thread_cpu_time();
        for _ in 0..batch {
            op();
        }
        if thread_cpu_time() - start >= args.sample / 4 || batch >= 1 << 24 {
            break;
        }
        batch *= 2;
    }
    let batch = batch * 4;
    let mut per_call: Vec<f64> = (0..args.samples)
        .map(|_| {
            let start = thread_cpu_time();
            for _ in 0..batch {
                op();
            }
            (thread_cpu_time() - start).as_secs_f64() * 1e9 / f64::from(batch)
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[per_call.len() / 2]
}

/// One figure of a [`Figures`].
type Measure = fn(&Figures) -> f64;

/// ns per call of: forward, inverse, mul_acc, mul_acc_wide (None where not measured).
struct Figures {
    forward: f64,
    inverse: f64,
    mul_acc: f64,
    mul_acc_wide: Option<f64>,
}

fn ours(args: &Args, plan: &NttPlan, rng: &mut StdRng) -> Figures {
    let (n, q) = (plan.len(), plan.modulus());
    let random = |rng: &mut StdRng| -> Vec<u32> { (0..n).map(|_| rng.gen_range(0..q)).collect() };
    let (mut a, b, c) = (random(rng), random(rng), random(rng));
    // Outputs are fully reduced, so repeating an operation on its own output stays valid.
    let forward = time_ns(args, || {
        plan.forward(black_box(&mut a)).expect("length");
    });
    let inverse = time_ns(args, || {
        plan.inverse(black_box(&mut a)).expect("length");
    });
    let mut acc = a.clone();
    let mul_acc = time_ns(args, || {
        plan.mul_acc(black_box(&mut acc), &b, &c).expect("length");
    });
    let mut wide = plan.wide_acc();
    let mul_acc_wide = time_ns(args, || {
        plan.mul_acc_wide(black_box(&mut wide), &b, &c)
            .expect("length");
    });
    Figures {
        forward,
        inverse,
        mul_acc,
        mul_acc_wide: Some(mul_acc_wide),
    }
}

fn peer(args: &Args, q: u64, n: usize, rng: &mut StdRng) -> Option<Figures> {
    let modulus = Modulus::new(q).ok()?;
    let op = NttOperator::new(&modulus, n)?;
    let random = |rng: &mut StdRng| -> Vec<u64> { (0..n).map(|_| rng.gen_range(0..q)).collect() };
    let (mut a, b, c) = (random(rng), random(rng), random(rng));
    let forward = time_ns(args, || op.forward(black_box(&mut a)));
    let inverse = time_ns(args, || op.backward(black_box(&mut a)));
    // fhe-math's pointwise API: a product into a scratch vector, then an addition.
    let (mut acc, mut scratch) = (a.clone(), vec![0u64; n]);
    let mul_acc = time_ns(args, || {
        scratch.copy_from_slice(&b);
        modulus.mul_vec(&mut scratch, &c);
        modulus.add_vec(black_box(&mut acc), &scratch);
    });
    Some(Figures {
        forward,
        inverse,
        mul_acc,
        mul_acc_wide: None,
    })
}

fn main() {
    let args = parse_args();
    let mut rng = StdRng::seed_from_u64(13);
    let avx2 = Backend::Avx2.is_available();
    println!(
        "ns per call on one thread (median thread CPU time of {} batches of ~{} ms); \
         peer = fhe_math::ntt::NttOperator (tfhe-ntt prime64 plan, as built here)",
        args.samples,
        args.sample.as_millis()
    );
    if !avx2 {
        println!("AVX2 not available: the AVX2 columns are empty");
    }
    println!();
    println!("| n | q | operation | ours AVX2 | ours portable | fhe-math | AVX2 / fhe-math | portable / fhe-math |");
    println!("|---|---|---|---|---|---|---|---|");
    for (n, q, label) in CASES {
        let Ok(plan) = NttPlan::new(q, n) else {
            println!("| {n} | {q} | no plan | | | | | |");
            continue;
        };
        let fast = avx2
            .then(|| plan.with_backend(Backend::Avx2).ok())
            .flatten()
            .map(|p| ours(&args, &p, &mut rng));
        let portable = plan
            .with_backend(Backend::Portable)
            .map(|p| ours(&args, &p, &mut rng))
            .ok();
        let peer = peer(&args, q, n, &mut rng);
        let pick = |f: &Option<Figures>, g: Measure| f.as_ref().map(g);
        let rows: [(&str, Measure); 4] = [
            ("forward", |f| f.forward),
            ("inverse", |f| f.inverse),
            ("forward + inverse", |f| f.forward + f.inverse),
            ("mul_acc", |f| f.mul_acc),
        ];
        let cell = |x: Option<f64>| x.map(|x| format!("{x:.0}")).unwrap_or_default();
        let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => format!("{:.2}", x / y),
            _ => String::new(),
        };
        for (op, measure) in rows {
            let (f, p, e) = (
                pick(&fast, measure),
                pick(&portable, measure),
                pick(&peer, measure),
            );
            println!(
                "| {n} | {q} ({label}) | {op} | {} | {} | {} | {} | {} |",
                cell(f),
                cell(p),
                cell(e),
                ratio(f, e),
                ratio(p, e)
            );
        }
        let wide = |f: &Option<Figures>| f.as_ref().and_then(|f| f.mul_acc_wide);
        let (f, p, e) = (wide(&fast), wide(&portable), pick(&peer, |f| f.mul_acc));
        println!(
            "| {n} | {q} ({label}) | mul_acc_wide (vs the peer's mul_acc) | {} | {} | | {} | {} |",
            cell(f),
            cell(p),
            ratio(f, e),
            ratio(p, e)
        );
    }
}
