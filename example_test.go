package dfaas_test

import (
	"fmt"

	"github.com/dfaas-go/dfaas"
)

// The paper's numbers: node 1 receives 50 req/s for a capacity of 10.
func ExampleFunctionState() {
	node1 := dfaas.FunctionState{Capacity: 10, Demand: 50}
	node2 := dfaas.FunctionState{Capacity: 20, Demand: 0}
	fmt.Println(node1.Overloaded(), node1.Deficit(), node2.Slack())
	// Output: true 40 20
}
