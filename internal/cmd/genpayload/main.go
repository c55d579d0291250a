// Command genpayload writes a deterministic, rootfs-like test payload (see package
// testpayload) for the examples and benchmark scripts: genpayload -size 1GiB -seed 1 -o FILE.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"github.com/aduflash/aduflash/internal/bytesize"
	"io"
	"os"

	"github.com/aduflash/aduflash/internal/testpayload"
)

func main() {
	size := flag.String("size", "16MiB", "payload size (bytes, or with KiB/MiB/GiB)")
	seed := flag.Uint64("seed", 1, "seed")
	out := flag.String("o", "", "output file")
	flag.Parse()
	n, err := bytesize.Parse(*size)
	if err != nil || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: genpayload -size N[KiB|MiB|GiB] [-seed S] -o FILE")
		os.Exit(2)
	}
	if err := write(*out, *seed, n); err != nil {
		fmt.Fprintln(os.Stderr, "genpayload:", err)
		os.Exit(3)
	}
}

func write(path string, seed uint64, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := io.Copy(w, testpayload.New(seed, n)); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
