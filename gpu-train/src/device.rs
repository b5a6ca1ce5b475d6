//! Device and dtype choice: bf16 on CUDA, f32 on the CPU (issue: LLaVA in tch).

use tch::{Device, Kind};

/// The device training runs on: the first CUDA device when libtorch sees
/// one, else the CPU.
pub fn default_device() -> Device {
    Device::cuda_if_available()
}

/// The compute dtype for a device: bf16 on CUDA, f32 on the CPU.
pub fn compute_kind(device: Device) -> Kind {
    match device {
        Device::Cuda(_) => Kind::BFloat16,
        _ => Kind::Float,
    }
}

/// GPU memory in use by all processes, MiB, from `nvidia-smi` (`None`
/// without it). libtorch's caching allocator keeps its peak reserved, so
/// this reads as the peak after a run.
pub fn gpu_used_mib() -> Option<f64> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.used", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    #[test]
    fn libtorch_links_and_computes() {
        // A 2x2 matmul through libtorch proves the rpath and symbols are right.
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
        let b = a.matmul(&a.transpose(0, 1));
        let got: Vec<f32> = b.reshape([-1]).try_into().unwrap();
        assert_eq!(got, vec![5.0, 11.0, 11.0, 25.0]);
        assert_eq!(compute_kind(Device::Cpu), Kind::Float);
    }
}
