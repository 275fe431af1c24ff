// CoreDNS for the real node's cluster DNS, built with only the plugins its Corefile uses: the
// kubernetes plugin answers cluster.local and the reverse zones from the API server; bind keeps it
// on the node's bridge; errors, log, health, ready and cache are the usual companions. No forward plugin: nothing is resolved outside
// the cluster (the node reaches no resolver, and must not try).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The order CoreDNS's plugin.cfg gives these plugins (the order they handle a query in).
var directives = []string{"bind", "ready", "health", "errors", "log", "cache", "kubernetes"}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
