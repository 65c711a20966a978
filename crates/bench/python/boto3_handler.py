#!/usr/bin/env python3
"""The usual alternative to a beanswap function: a Python handler in the style of the AWS sample
functions. At init it imports boto3 and creates the four clients beanswap's functions use; each
invocation reports the CodePipeline job (one PutJobFailureResult, exactly what a Rust function does on
a configuration error). It runs under the same local Lambda Runtime API as the Rust binaries, through
the smallest possible runtime loop (no awslambdaric), which favours Python if anything."""
import json
import os
import urllib.request

import boto3

REGION = os.environ.get("AWS_REGION", "us-east-1")
session = boto3.session.Session()
CLIENTS = {
    name: session.client(name, region_name=REGION)
    for name in ("codepipeline", "elasticbeanstalk", "s3", "route53")
}


def handler(event):
    job = event["CodePipeline.job"]
    CLIENTS["codepipeline"].put_job_failure_result(
        jobId=job["id"],
        failureDetails={"type": "ConfigurationError", "message": "benchmark: cold start"},
    )


def main():
    base = "http://%s/2018-06-01/runtime" % os.environ["AWS_LAMBDA_RUNTIME_API"]
    while True:
        with urllib.request.urlopen(base + "/invocation/next") as r:
            request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
            event = json.loads(r.read())
        try:
            body = json.dumps(handler(event))
            path = "/invocation/%s/response" % request_id
        except Exception as e:  # reported to the Runtime API like the real runtime does
            body = json.dumps({"errorMessage": str(e), "errorType": type(e).__name__})
            path = "/invocation/%s/error" % request_id
        urllib.request.urlopen(
            urllib.request.Request(base + path, data=body.encode(), method="POST")
        ).read()


if __name__ == "__main__":
    main()
