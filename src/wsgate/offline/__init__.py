"""serverless.yml and SAM apps on the local gateway: each Lambda function in its own processes.

Nothing here runs on AWS (the Lambda runtime is `wsgate.aws`). One job per module:
`spec` (what a file declares), `cloudformation` (template loading and intrinsic functions),
`variables` (Serverless `${...}` variables), `serverless` and `sam` (file -> spec), `pool`
(a function's processes), `function_process` (what runs inside one), `environment` (what
a function process starts with), `tables` (DynamoDB tables on a local endpoint),
`local_dynamodb` (the moto server an app gets by default), `dependencies` (a function's
requirements.txt, installed into a cached folder), `streams` (DynamoDB Stream functions,
polled as Lambda does), and `app`
(spec -> the App the gateway serves).
"""
