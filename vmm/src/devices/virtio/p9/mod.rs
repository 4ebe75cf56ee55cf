//! A 9P2000.L file server confined to one host directory (virtio-9p's protocol).
