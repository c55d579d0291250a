// Package mcuboottest holds what the MCUboot tests of several packages share with the golden
// images of image/mcuboot, which imgtool made.
package mcuboottest

// Payload returns n bytes of xorshift32 from 0x12345678: the application binary of the
// golden images (their first 1000 bytes) and of the other MCUboot tests.
func Payload(n int) []byte {
	b := make([]byte, n)
	x := uint32(0x12345678)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}
