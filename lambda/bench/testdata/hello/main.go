// Command hello is the benchmark's baseline: the smallest aws-lambda-go
// function, built exactly like the project's functions.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"
)

func main() {
	lambda.Start(func(context.Context) (string, error) { return "hello", nil })
}
