// Command fileserve serves one folder over HTTP on 127.0.0.1 with Range support (Go's
// http.FileServer), for benchmarks and demos: it prints the URL it listens on and runs
// until killed.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	dir := flag.String("dir", ".", "folder to serve")
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fileserve:", err)
		os.Exit(1)
	}
	fmt.Printf("http://%s/\n", l.Addr())
	if err := http.Serve(l, http.FileServer(http.Dir(*dir))); err != nil {
		fmt.Fprintln(os.Stderr, "fileserve:", err)
		os.Exit(1)
	}
}
