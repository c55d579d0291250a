package cliapp

import (
	"net"
	"strings"
)

// IsLoopbackName reports whether host (no port) is localhost or a loopback IP address.
func IsLoopbackName(host string) bool {
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoopbackListen reports whether a listen address "HOST:PORT" stays on this machine ("" or a
// name other than localhost do not): the servers of the toolkit listen beyond it only with
// --expose-to-network.
func LoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && IsLoopbackName(host)
}
