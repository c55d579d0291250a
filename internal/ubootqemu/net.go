package ubootqemu

// The net build of the peer (VARIANT=net of uboot-build-ota.sh): everything of u-boot.bin plus
// DHCP, TFTP and fastboot over UDP on port 5554 writing to mmc 0. Its fastboot download
// buffer lies at 0x50000000 and is 128 MiB (CONFIG_FASTBOOT_BUF_ADDR, _SIZE): beyond the
// 256 MiB of RAM from 0x40000000 that Args gives otherwise, where a download crashes U-Boot
// ("Synchronous Abort"), so a board with Config.Network gets NetMemory.
const (
	NetMemory = "512" // MiB, -m
	// FastbootPort is the UDP port of U-Boot's fastboot (CONFIG_UDP_FUNCTION_FASTBOOT_PORT).
	FastbootPort = 5554
)
