# maillab discovers this with twisted.plugin.getPlugins, as twistd finds
# "maillab" itself; the section class and builder are imported on use.
from twisted_maillab.plugins import ServicePlugin

lmtp = ServicePlugin("lmtp", "maillab_lmtp:LMTPSection", "maillab_lmtp:buildLMTP")
