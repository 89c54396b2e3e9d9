package balance_test

import (
	"fmt"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/balance"
)

// Node 1 of the reference scenario plans with its two idle peers.
func ExampleProportional() {
	figlet := func(capacity, demand dfaas.Rate) map[string]dfaas.FunctionState {
		return map[string]dfaas.FunctionState{"figlet": {Capacity: capacity, Demand: demand}}
	}
	self := dfaas.State{Node: "1", Functions: figlet(10, 50)}
	peers := []dfaas.Advert{
		{Node: "2", Addr: "10.0.0.2:8081", Functions: figlet(20, 0)},
		{Node: "3", Addr: "10.0.0.3:8081", Functions: figlet(30, 0)},
	}
	plan := balance.Proportional{}.Plan(self, peers).Functions["figlet"]
	fmt.Printf("serve %g locally\n", plan.Limit)
	for _, p := range plan.Peers {
		fmt.Printf("forward %.0f%% (%g of 40 req/s) to node %s\n", 100*p.Weight, 40*p.Weight, p.Node)
	}
	// Output:
	// serve 10 locally
	// forward 40% (16 of 40 req/s) to node 2
	// forward 60% (24 of 40 req/s) to node 3
}
