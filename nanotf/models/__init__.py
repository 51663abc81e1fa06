from .bert import BertConfig as BertConfig
from .bert import BertForMaskedLM as BertForMaskedLM
from .bert import BertModel as BertModel
from .distilbert import DistilBertConfig as DistilBertConfig
from .distilbert import DistilBertModel as DistilBertModel
from .transformer import Transformer as Transformer
