# Sourced by the device scripts (gpu_device.sh, gpu_device_session.sh): on the lent
# GPU machine, the Vulkan loader from the carried .gl/*.deb (it has none; device
# README) and NVIDIA's ICD; XDG_RUNTIME_DIR set to silence a harmless warning.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
if [ -d .gl ] && ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
fi
ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$ICD" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then export VK_DRIVER_FILES=$ICD; fi
