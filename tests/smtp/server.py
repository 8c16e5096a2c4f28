"""A real SMTP server for the email tests (aiosmtpd).

Each accepted message is written to DIR as one JSON file {mail_from, rcpt_tos, data}, written
to a temporary name and renamed, so the test never reads half a message. Recipients listed in
--reject are refused at RCPT with 550, as a mail server refuses an unknown mailbox. Prints
READY once it listens, then serves until killed.

usage: server.py PORT DIR [--reject a@x,b@y] [--delay SECONDS]
"""
import argparse
import asyncio
import json
import os
import sys
import time
import uuid

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, directory, reject, delay):
        self.directory = directory
        self.reject = {r.lower() for r in reject}
        self.delay = delay

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        data = envelope.content.decode("utf-8", errors="replace")
        name = "%d-%s" % (time.time_ns(), uuid.uuid4().hex)
        tmp = os.path.join(self.directory, "." + name + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos, "data": data}, f)
        os.rename(tmp, os.path.join(self.directory, name + ".json"))
        return "250 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("directory")
    p.add_argument("--reject", default="")
    p.add_argument("--delay", type=float, default=0.0)
    a = p.parse_args()
    os.makedirs(a.directory, exist_ok=True)
    reject = [r for r in a.reject.split(",") if r]
    controller = Controller(Handler(a.directory, reject, a.delay), hostname="127.0.0.1", port=a.port)
    controller.start()
    print("READY", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
