package balance

import (
	"fmt"
	"sort"
	"strings"

	"github.com/dfaas-go/dfaas"
)

var strategies = map[string]dfaas.Balancer{
	"proportional": Proportional{},
	"all-local":    AllLocal{},
	"recalc":       Recalc{},
	"static":       Static{},
	"random":       Random{},
	"resilient":    Resilient{},
	"nearest":      Nearest{},
}

// Names lists the strategies ByName knows, sorted.
func Names() []string {
	names := make([]string, 0, len(strategies))
	for n := range strategies {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ByName returns the strategy called name (see Names).
func ByName(name string) (dfaas.Balancer, error) {
	if b, ok := strategies[name]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("balance: unknown strategy %q (known: %s)", name, strings.Join(Names(), ", "))
}
