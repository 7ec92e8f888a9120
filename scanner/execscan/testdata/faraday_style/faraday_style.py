import json, os
targets = os.environ.get("EXECUTOR_CONFIG_TARGET").split(" ")
deep = os.environ.get("EXECUTOR_CONFIG_DEEP")  # Faraday: set means true
hosts = []
for ip in targets:
    web = {"name": "http", "port": 80, "protocol": "tcp", "status": "open", "version": "nginx",
           "vulnerabilities": [{"name": "Directory listing", "desc": "/files/ is listed", "severity": "medium"}]}
    vulns = [{"name": "Token accepted", "desc": os.environ["API_TOKEN"], "severity": "high"}] if deep else []
    hosts.append({"ip": ip, "hostnames": ["web.example.com"], "services": [web], "vulnerabilities": vulns})
print(json.dumps({"hosts": hosts}))
print()  # Faraday's end of output: a blank line
