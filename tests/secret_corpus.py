"""Secrets in the shapes users leak them, each with the fragments that must never be written or printed.

Used by tests/test_redaction.py (the redaction of each shape) and tests/programs/test_secrets.py (every
program that writes, with these planted in environment variables, flags, --model_args, a script's arguments and
storage URLs). Every fragment is at least 8 characters, so a search of binary files (plots, event files) does
not find one by chance.
"""

# (name, value as a user gives it, fragments of the secret that must not appear anywhere)
SHAPES = [
    ("url empty user", "redis://:pwEmptyUser01@cache.example:6379/0", ["pwEmptyUser01"]),
    ("url slash in password", "https://u:pwSlash02/tailSlash02@h.example/x", ["pwSlash02", "tailSlash02"]),
    ("url at in password", "https://u:pwAt03x@tailAt03x@h.example", ["pwAt03x", "tailAt03x"]),
    ("url colon in password", "https://u:pwColon04:tailColon04@h.example/", ["pwColon04", "tailColon04"]),
    ("postgres url", "postgresql://pgu:pwPostgres05@127.0.0.1:1/db", ["pwPostgres05"]),
    ("mysql url", "mysql+pymysql://root:pwMysql06q@db.example/optuna", ["pwMysql06q"]),
    ("s3 url with keys", "s3://AKIAQWERTYUIOPASDF07:pwS3key07xyz@bucket/prefix", ["pwS3key07xyz"]),
    ("gs url userinfo", "gs://svc:pwGcs08abcd@bucket/run", ["pwGcs08abcd"]),
    ("token in url user", "https://ghp_TokenUser09abcdefghijklmnopqrstuvwxy@github.com/o/r.git",
     ["TokenUser09abcdefghij"]),
    ("registry login", "robot:pwRegistry10@registry.example/img:1", ["pwRegistry10"]),
    ("query token", "https://store.example/r?token=tokQuery11abc&x=1", ["tokQuery11abc"]),
    ("query signature", "https://acct.blob.example/c?sv=2020&sig=sigSas12abcd%3D", ["sigSas12abcd"]),
    ("aws presigned", "https://b.s3.example/k?X-Amz-Signature=amzSig13abcdef", ["amzSig13abcdef"]),
    ("github classic", "ghp_GithubClassic14abcdefghijklmnopqrst", ["GithubClassic14"]),
    ("github fine-grained", "github_pat_11AAFineGrained15_abcdefghijklmnopqrstuvwx", ["FineGrained15"]),
    ("github oauth", "gho_GithubOauth16abcdefghijklmnopqrstuv", ["GithubOauth16"]),
    ("gitlab", "glpat-GitlabPat17abcdefghij", ["GitlabPat17"]),
    ("slack bot", "xoxb-123456789012-SlackBot18abcdef", ["SlackBot18"]),
    ("slack webhook", "https://hooks.slack.com/services/T0000/B0000/SlackHook19abcdef", ["SlackHook19"]),
    ("aws key id", "AKIAAWSKEYID20ABCDEF", ["AKIAAWSKEYID20"]),
    ("aws secret named", "aws_secret_access_key=AwsSecret21/abcdEFGHijklMNOPqrstUVWXyz0123",
     ["AwsSecret21"]),
    ("gcp api key", "AIzaGcpApiKey22abcdefghijklmnopqrstuvw", ["GcpApiKey22"]),
    ("google oauth", "ya29.GoogleOauth23abcdefghijklmnop", ["GoogleOauth23"]),
    ("gcp service account key", '{"type": "service_account", "private_key_id": "PrivKeyId24abc", '
     '"private_key": "-----BEGIN PRIVATE KEY-----\\nPemInJson24abcdef\\n-----END PRIVATE KEY-----\\n"}',
     ["PrivKeyId24abc", "PemInJson24abcdef"]),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJKd3QyNXN1YiJ9.JwtSignature25abcdef",
     ["JwtSignature25", "eyJzdWIiOiJKd3Qy"]),
    ("pem rsa", "-----BEGIN RSA PRIVATE KEY-----\nPemRsaBody26abcdef\n-----END RSA PRIVATE KEY-----",
     ["PemRsaBody26"]),
    ("pem openssh", "-----BEGIN OPENSSH PRIVATE KEY-----\nOpensshBody27abcd\n-----END OPENSSH PRIVATE KEY-----",
     ["OpensshBody27"]),
    ("bearer", "Bearer BearerTok28abcdef.ghi", ["BearerTok28"]),
    ("basic header", "Authorization: Basic QmFzaWNIZWFkZXIyOTpwdw==", ["QmFzaWNIZWFkZXIyOTpwdw"]),
    ("token header", "Authorization: Token TokenHeader30abcdef", ["TokenHeader30"]),
    ("json password", '{"user": "me", "password": "pwJson31abcd"}', ["pwJson31abcd"]),
    ("python repr secret", "{'client_secret': 'pwRepr32abcd'}", ["pwRepr32abcd"]),
    ("flag with space", "--password pwFlagSpace33", ["pwFlagSpace33"]),
    ("flag with equals", "--db-password=pwFlagEq34abc", ["pwFlagEq34abc"]),
    ("env assignment", "API_TOKEN=pwEnvAssign35abc", ["pwEnvAssign35abc"]),
    ("yaml pair", "secret: pwYaml36abcdef", ["pwYaml36abcdef"]),
    ("numeric pin", "pin=83619257", ["83619257"]),
    ("hugging face", "hf_HuggingFace37abcdefghijklmnopqrstu", ["HuggingFace37"]),
    ("openai", "sk-proj-OpenAiKey38abcdefghijklmnop", ["OpenAiKey38"]),
    ("stripe", "sk_live_StripeKey39abcdefgh", ["StripeKey39"]),
    ("npm", "npm_NpmToken40abcdefghijklmnopqrstuvwxyz", ["NpmToken40"]),
    ("pypi", "pypi-AgEIcHlwaS5vcmcPypiToken41abcdefghijklmnopqrstuvwxyz0123", ["PypiToken41"]),
    ("sendgrid", "SG.SendGrid42abcdefgh.SendGridTail42abcdef", ["SendGrid42", "SendGridTail42"]),
    ("azure connection string", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=AzureKey43abc==;",
     ["AzureKey43abc"]),
    ("odbc password", "Driver={X};Server=s;Uid=u;Pwd=pwOdbc44abcd;", ["pwOdbc44abcd"]),
]

# Secret-named variables, keys and flags whose values carry no shape of their own: the name alone says it.
NAMED = [
    ("HARNESS_PASSWD", "pwNamedPasswd50"),
    ("HARNESS_PWD", "pwNamedPwd51xy"),
    ("HARNESS_API_KEY", "pwNamedApiKey52"),
    ("HARNESS_AUTH", "pwNamedAuth53xy"),
    ("HARNESS_CREDENTIALS", "pwNamedCreds54"),
    ("HARNESS_SECRET_TOKEN", "pwNamedSecTok55"),
]

# What looks alike and must be kept as it is.
KEPT = [
    "tf-determinism-harness:gpu", "img:1.0@sha256:abc", "registry:5000/img:tag", ":4096:8",
    "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit", "someone@example.com", "KeyError: 'units'", "key_dim=64",
    "https://h.example:8080/x?mail=a@b.example", "Basic usage of the tool", "the token expired",
    '"trial_key": "0123456789abcdef0123"', "trial_key: 0123456789abcdef0123", "learning_rate=0.001",
    "sha256 3f786850e387550fdab836ed7e6dc881de23001b", "https://example.com/path?page=2",
    "postgresql://127.0.0.1/db", "file:///tmp/x", "Dense(64, activation='relu')",
    "PASS: /tmp/tmp.x1y2z3 passed", "FAIL: 2 of 5 checks failed",
]


def fragments() -> list[str]:
    """Every fragment of every planted secret."""
    return [f for _, _, parts in SHAPES for f in parts] + [value for _, value in NAMED]
