"""The CA server's tasks (IRIS ``PKI.CAServer``): configure, submit, issue, delete, list, get.

The SOAP service, the portal and the command line all call :class:`CAServer`; it owns the
rules (what a valid submission is, how an issue is made atomic) so that every front end
behaves the same.
"""

from pki_soap.server.tasks.configure import ConfigureTasks
from pki_soap.server.tasks.issue import IssueTasks
from pki_soap.server.tasks.listing import ListingTasks
from pki_soap.server.tasks.revoke import RevokeTasks
from pki_soap.server.tasks.submit import SubmitTasks


class CAServer(ConfigureTasks, SubmitTasks, IssueTasks, ListingTasks, RevokeTasks):
    """The Certificate Authority server of one data directory.

    One object with every task; each family of tasks is defined in its module of this
    package (:mod:`~pki_soap.server.tasks.base` holds what they share).
    """
